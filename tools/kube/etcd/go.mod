// Build-only module for the test etcd (scripts/peers/kube.sh). No code lives here.
// etcd's server module has ../ replace directives, so `go install …@version` refuses it;
// requiring its sibling modules at the same tag here builds it instead.
module sluice.dev/tools/kube/etcd

go 1.26.0

require (
	go.etcd.io/etcd/api/v3 v3.6.16
	go.etcd.io/etcd/client/pkg/v3 v3.6.16
	go.etcd.io/etcd/client/v3 v3.6.16
	go.etcd.io/etcd/pkg/v3 v3.6.16
	go.etcd.io/etcd/server/v3 v3.6.16
)
