import json
def upd(file, kind, name, ns, frm, to, setter, image, api="apps/v1"):
    pol = ":".join(setter.split(":")[:2])
    return dict(file=file, apiVersion=api, kind=kind, name=name, namespace=ns, **{"from": frm}, to=to, setter=setter, image=image, policy=pol)

seed = [upd("nginx.yml","Deployment","nginx-deployment","default","example.com/nginx:0.0.1","example.com/nginx:0.0.2","flux-system:nginx","example.com/nginx:0.0.2")]
multi = [
  upd("apps/web.yaml","Deployment","web","prod","ghcr.io/o/web:1.0.0","ghcr.io/o/web:1.0.1","flux-system:web","ghcr.io/o/web:1.0.1"),
  upd("apps/web.yaml","Deployment","web","prod","ghcr.io/o/side:2.0.0","ghcr.io/o/side:2.1.0","flux-system:side","ghcr.io/o/side:2.1.0"),
  upd("apps/web.yaml","CronJob","cleanup","prod","1.0.0","1.0.1","flux-system:web:tag","ghcr.io/o/web:1.0.1", api="batch/v1"),
  upd("apps/kustomization.yaml","Kustomization","","","ghcr.io/o/old","ghcr.io/o/web","flux-system:web:name","ghcr.io/o/web:1.0.1", api="kustomize.config.k8s.io/v1beta1"),
  upd("apps/kustomization.yaml","Kustomization","","","1.0.0","1.0.1","flux-system:web:tag","ghcr.io/o/web:1.0.1", api="kustomize.config.k8s.io/v1beta1"),
  upd("podinfo.yaml","Deployment","podinfo","default","ghcr.io/stefanprodan/podinfo:5.0.0","ghcr.io/stefanprodan/podinfo:5.0.3","flux-system:podinfo","ghcr.io/stefanprodan/podinfo:5.0.3"),
]
refs = [
  upd("a.yaml","Deployment","a","d","nginx:1.1","nginx:1.2","flux-system:nginx","nginx:1.2"),
  upd("a.yaml","Deployment","a","d","x","localhost:5000/app:1","flux-system:local","localhost:5000/app:1"),
  upd("a.yaml","Deployment","a","d","x","127.0.0.1:5000/team/app:1.0.0","flux-system:ip","127.0.0.1:5000/team/app:1.0.0"),
  upd("a.yaml","Deployment","a","d","x","docker.io/foo:1","flux-system:hub","docker.io/foo:1"),
  upd("a.yaml","Deployment","a","d","x","library/bar:2","flux-system:lib","library/bar:2"),
  upd("a.yaml","Deployment","a","d","x","ghcr.io/o/app:1.0@sha256:6745aaad46d795c9836632e1fb62f24b7e7f4c843144da8e47a5465c411a14be","flux-system:dig","ghcr.io/o/app:1.0@sha256:6745aaad46d795c9836632e1fb62f24b7e7f4c843144da8e47a5465c411a14be"),
]
v1beta1_ex1 = """Automated image update

Automation name: {{ .AutomationObject }}

Files:
{{ range $filename, $_ := .Updated.Files -}}
- {{ $filename }}
{{ end -}}

Objects:
{{ range $resource, $_ := .Updated.Objects -}}
- {{ $resource.Kind }} {{ $resource.Name }}
{{ end -}}

Images:
{{ range .Updated.Images -}}
- {{.}}
{{ end -}}
"""
v1beta1_ex2 = """Automated image update

Automation name: {{ .AutomationObject }}

Files:
{{ range $filename, $_ := .Updated.Files -}}
- {{ $filename }}
{{ end -}}

Objects:
{{ range $resource, $_ := .Updated.Objects -}}
- {{ $resource.Kind | lower }} {{ $resource.Name | lower  }}
{{ end -}}

Images:
{{ range $image, $_ := .Updated.Images -}}
\t{{ if contains "1.0.0" $image -}}
\t\t- {{ $image }}
\t{{ else -}}
\t\t[skip ci] wrong image
\t{{ end -}}        
{{ end -}}        
"""
v1beta2_ex1 = """Automated image update

Automation name: {{ .AutomationObject }}

Files:
{{ range $filename, $_ := .Changed.FileChanges -}}
- {{ $filename }}
{{ end -}}

Objects:
{{ range $resource, $changes := .Changed.Objects -}}
- {{ $resource.Kind }} {{ $resource.Name }}
  Changes:
{{- range $_, $change := $changes }}
    - {{ $change.OldValue }} -> {{ $change.NewValue }}
{{ end -}}
{{ end -}}
"""
v1beta2_ex2 = """Automated image update

Automation name: {{ .AutomationObject }}

Files:
{{ range $filename, $_ := .Changed.FileChanges -}}
- {{ $filename }}
{{ end -}}

Objects:
{{ range $resource, $changes := .Changed.Objects -}}
- {{ $resource.Kind | lower }} {{ $resource.Name | lower }}
  Changes:
{{- range $_, $change := $changes }}
  {{ if contains "5.0.3" $change.NewValue -}}
    - {{ $change.OldValue }} -> {{ $change.NewValue }}
  {{ else -}}
    [skip ci] wrong image
  {{ end -}}
{{ end -}}
{{ end -}}
"""
gerrit = """Perform automatic image update

Automation name: {{ .AutomationObject }}

{{- $ChangeId := .AutomationObject -}}
{{- $ChangeId = printf "%s%s" $ChangeId ( .Changed.FileChanges | toString ) -}}
{{- $ChangeId = printf "%s%s" $ChangeId ( .Changed.Objects | toString ) -}}
{{- $ChangeId = printf "%s%s" $ChangeId ( .Changed.Changes | toString ) }}
Change-Id: {{ printf "I%s" ( sha256sum $ChangeId | trunc 40 ) }}
"""
cases = [
  dict(name="seed 004: println of each image", template="{{range .Updated.Images}}{{println .}}{{end}}", updates=seed),
  dict(name="flux v1beta1 docs: files, objects and images", template=v1beta1_ex1, updates=multi),
  dict(name="flux v1beta1 docs: template functions (ranges an index into contains)", template=v1beta1_ex2, updates=multi),
  dict(name="flux v1beta2 docs: changed files and objects", template=v1beta2_ex1, updates=multi),
  dict(name="flux v1beta2 docs: template functions", template=v1beta2_ex2, updates=multi),
  dict(name="flux docs: messageTemplateValues", template="Automated image update by Flux for cluster {{ .Values.cluster }}.", values={"cluster":"prod"}, updates=seed),
  dict(name="flux docs: Gerrit Change-Id", template=gerrit, updates=multi),
  dict(name="flux docs: v1beta1 default-style", template="Automated image update by Flux\n\n[ci skip]\n", updates=seed),
  dict(name="changes with print and println", template="{{range .Changed.Changes}}{{print .OldValue}} -> {{println .NewValue}}{{end}}", updates=multi),
  dict(name="whole structures print as Go prints them", template="{{ .AutomationObject }}|{{ .Updated.Files }}|{{ .Updated.Objects }}|{{ .Updated.Images }}|{{ .Changed.FileChanges }}|{{ .Changed.Objects }}|{{ .Changed.Changes }}|{{ .Values }}|{{ .Updated }}", values={"b":"2","a":"1"}, updates=multi),
  dict(name="the whole data", template="{{ . }}", updates=seed),
  dict(name="image ref methods", template="{{ range .Updated.Images }}{{ . }} {{ .Identifier }} {{ .Repository }} {{ .Registry }} {{ .Name }} {{ .Policy }} {{ .Policy.Name }}\n{{ end }}", updates=refs),
  dict(name="if, else if, else, with, and, or, not, eq, ne, len", template="""{{ if eq (len .Updated.Images) 1 }}one{{ else if gt0 }}{{ end }}""".replace("{{ else if gt0 }}","{{ else if ne (len .Updated.Images) 0 }}many{{ else }}none") + """|{{ with .Values.cluster }}cluster={{ . }}{{ else }}no cluster{{ end }}|{{ with .Values.nothing }}x{{ else }}none{{ end }}|{{ and "a" "" "c" }}|{{ or "" "b" }}|{{ not .Values }}|{{ if and .Updated.Files (not .Values.nothing) }}yes{{ end }}|{{ eq .AutomationObject.Name "app" "auto" }}|{{ ne .AutomationObject.Namespace "flux-system" }}""", values={"cluster":"prod"}, updates=multi),
  dict(name="missing values", template="[{{ .Values.missing }}] [{{ print .Values.missing }}] [{{ if .Values.missing }}set{{ else }}unset{{ end }}]", updates=seed),
  dict(name="printf verbs", template='{{ printf "%s|%v|%d|%q|%%|%5s|%-5s|" .AutomationObject.Name .AutomationObject 42 "a\\"b" "ab" "cd" }}{{ printf "%s %s" "only" }}{{ printf "%d" "x" }}{{ printf "%s" 3 }}', updates=seed),
  dict(name="print spacing", template='{{ print 1 2 "a" "b" 3 }}|{{ println "x" 1 }}|{{ print .Updated.Images "s" }}', updates=seed),
  dict(name="trim markers and comments", template='a  {{- " b " -}}  c\n  {{- /* a comment */ -}}\n  d {{/* kept spaces */}} e\n{{- "f" }}\t\n', updates=seed),
  dict(name="variables and scopes", template='{{ $n := .AutomationObject.Name }}{{ range $i, $img := .Updated.Images }}{{ $i }}:{{ $img }}:{{ $n }} {{ end }}{{ $n = "changed" }}{{ $n }}|{{ range .Changed.Changes }}{{ $.AutomationObject.Namespace }}{{ end }}', updates=multi),
  dict(name="range with else and over values", template='{{ range $k, $v := .Values }}{{ $k }}={{ $v }};{{ else }}no values{{ end }}|{{ range .Updated.Images }}x{{ else }}none{{ end }}', values={"z":"26","a":"1"}, updates=seed),
  dict(name="sprig string functions", template='{{ upper "abc" }} {{ lower "ABC" }} {{ title "hello wide-world don\'t" }} [{{ trim "  x y  " }}] {{ trimPrefix "v" "v1.2" }} {{ trimSuffix ".0" "1.0" }} {{ replace "." "-" "1.2.3" }} {{ contains "b" "abc" }} {{ hasPrefix "a" "abc" }} {{ hasSuffix "c" "abc" }} {{ quote "a" 1 }} {{ trunc 3 "abcdef" }} {{ trunc -2 "abcdef" }} {{ toString 12 }} {{ sha256sum "x" }}', updates=seed),
  dict(name="parenthesised pipelines and chains", template='{{ (index0) }}'.replace("(index0)", '(print "a" | upper)') + '|{{ (.AutomationObject).Name }}|{{ .AutomationObject.Name | printf "%s!" }}', updates=seed),
  dict(name="two markers of one policy in one object", template="{{ range $o, $refs := .Updated.Objects }}{{ $o.Kind }} {{ len $refs }} {{ $refs }}\n{{ end }}{{ .Changed.Changes }}", updates=[
     upd("k.yaml","Kustomization","","","old","ghcr.io/o/web","flux-system:web:name","ghcr.io/o/web:1.0.1", api="kustomize.config.k8s.io/v1beta1"),
     upd("k.yaml","Kustomization","","","1.0.0","1.0.1","flux-system:web:tag","ghcr.io/o/web:1.0.1", api="kustomize.config.k8s.io/v1beta1")]),
  # errors (Go fails at parse or at execution; Sluice fails when the template is loaded)
  dict(name="error: unknown field", template="{{ .Updated.Foo }}", updates=seed),
  dict(name="error: unknown function", template="{{ nosuchfunc .Updated }}", updates=seed),
  dict(name="error: string function on a struct", template="{{ .AutomationObject | upper }}", updates=seed),
  dict(name="error: range over a struct", template="{{ range .AutomationObject }}x{{ end }}", updates=seed),
  dict(name="error: unclosed action", template="{{ .AutomationObject ", updates=seed),
  dict(name="error: missing end", template="{{ if .Values }}x", updates=seed),
  dict(name="error: field of a string", template="{{ .AutomationObject.Name.Foo }}", updates=seed),
  dict(name="error: wrong number of args", template='{{ contains "a" }}', updates=seed),
  dict(name="error: undefined variable", template='{{ $x }}', updates=seed),
  dict(name="error: argument to a non-function", template='{{ .AutomationObject "x" }}', updates=seed),
]
for c in cases:
  c.setdefault("namespace", "flux-system"); c.setdefault("automation", "app")
json.dump(cases, open("cases.json", "w"), indent=1)
