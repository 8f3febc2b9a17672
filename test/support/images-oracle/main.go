// Oracle for src/images tests: answers semver, regexp and ParseFloat questions with the real Go
// libraries Flux uses (Masterminds/semver v3.4.0, Go regexp, strconv). Reads JSON lines on stdin.
// Run by generate.ts, which writes src/images/testdata/go-cases.json; the tests compare Sluice against that file.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/Masterminds/semver/v3"
)

type Req struct {
	Kind     string   `json:"kind"`
	Range    string   `json:"range"`
	Versions []string `json:"versions"`
	Pattern  string   `json:"pattern"`
	Template string   `json:"template"`
	Inputs   []string `json:"inputs"`
}

func parseVersion(v string) (*semver.Version, error) {
	vLessV := strings.TrimPrefix(v, "v")
	if _, err := semver.StrictNewVersion(vLessV); err != nil {
		return nil, err
	}
	return semver.NewVersion(v)
}

func main() {
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 64<<20), 64<<20)
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	for sc.Scan() {
		var r Req
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			panic(err)
		}
		res := map[string]any{}
		switch r.Kind {
		case "semver":
			c, err := semver.NewConstraint(r.Range)
			if err != nil {
				res["error"] = err.Error()
				break
			}
			m := []any{}
			for _, v := range r.Versions {
				pv, err := parseVersion(v)
				if err != nil {
					m = append(m, nil)
					continue
				}
				m = append(m, c.Check(pv))
			}
			res["matches"] = m
			var latest *semver.Version
			for _, v := range r.Versions {
				if pv, err := parseVersion(v); err == nil {
					if c.Check(pv) && (latest == nil || pv.GreaterThan(latest)) {
						latest = pv
					}
				}
			}
			if latest != nil {
				res["latest"] = latest.Original()
			}
		case "regex":
			re, err := regexp.Compile(r.Pattern)
			if err != nil {
				res["error"] = err.Error()
				break
			}
			outs := []any{}
			for _, in := range r.Inputs {
				sm := re.FindStringSubmatchIndex(in)
				if sm == nil {
					outs = append(outs, nil)
					continue
				}
				groups := []any{}
				for i := 0; i < len(sm); i += 2 {
					if sm[i] < 0 {
						groups = append(groups, nil)
					} else {
						groups = append(groups, in[sm[i]:sm[i+1]])
					}
				}
				item := map[string]any{"groups": groups}
				if r.Template != "" {
					item["expand"] = string(re.ExpandString(nil, r.Template, in, sm))
				}
				outs = append(outs, item)
			}
			res["results"] = outs
		case "float":
			outs := []any{}
			for _, in := range r.Inputs {
				f, err := strconv.ParseFloat(in, 64)
				if err != nil {
					outs = append(outs, nil)
				} else {
					outs = append(outs, fmt.Sprintf("%v", f))
				}
			}
			res["results"] = outs
		}
		b, _ := json.Marshal(res)
		out.Write(b)
		out.WriteString("\n")
	}
}
