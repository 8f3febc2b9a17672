// Oracle: renders Flux commit-message templates with Go's text/template + Sprig over Flux's data types.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"strings"
	"text/template"

	"github.com/Masterminds/sprig/v3"
	"github.com/google/go-containerregistry/pkg/name"
)

type NamespacedName struct {
	Namespace string
	Name      string
}

func (n NamespacedName) String() string { return n.Namespace + "/" + n.Name }

type ImageRef interface {
	String() string
	Identifier() string
	Repository() string
	Registry() string
	Name() string
	Policy() NamespacedName
}

type imageRef struct {
	name.Reference
	policy NamespacedName
}

func (i imageRef) Policy() NamespacedName { return i.policy }
func (i imageRef) Repository() string     { return i.Context().RepositoryStr() }
func (i imageRef) Registry() string       { return i.Context().Registry.String() }

type TypeMeta struct {
	APIVersion string
	Kind       string
}
type NameMeta struct {
	Name      string
	Namespace string
}
type ResourceIdentifier struct {
	TypeMeta
	NameMeta
}
type ObjectIdentifier struct {
	ResourceIdentifier
}

type Result struct {
	Files map[string]FileResult
}
type FileResult struct {
	Objects map[ObjectIdentifier][]ImageRef
}

func (r Result) Images() []ImageRef {
	seen := make(map[ImageRef]struct{})
	var result []ImageRef
	files := make([]string, 0)
	for f := range r.Files {
		files = append(files, f)
	}
	sort.Strings(files)
	for _, f := range files {
		file := r.Files[f]
		keys := objKeys(file.Objects)
		for _, k := range keys {
			for _, ref := range file.Objects[k] {
				if _, ok := seen[ref]; !ok {
					seen[ref] = struct{}{}
					result = append(result, ref)
				}
			}
		}
	}
	return result
}

func objKeys[V any](m map[ObjectIdentifier]V) []ObjectIdentifier {
	keys := make([]ObjectIdentifier, 0)
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		a, b := keys[i], keys[j]
		if a.APIVersion != b.APIVersion {
			return a.APIVersion < b.APIVersion
		}
		if a.Kind != b.Kind {
			return a.Kind < b.Kind
		}
		if a.Name != b.Name {
			return a.Name < b.Name
		}
		return a.Namespace < b.Namespace
	})
	return keys
}

func (r Result) Objects() map[ObjectIdentifier][]ImageRef {
	result := make(map[ObjectIdentifier][]ImageRef)
	files := make([]string, 0)
	for f := range r.Files {
		files = append(files, f)
	}
	sort.Strings(files)
	for _, f := range files {
		for res, refs := range r.Files[f].Objects {
			result[res] = append(result[res], refs...)
		}
	}
	return result
}

type ResultV2 struct {
	ImageResult Result
	FileChanges map[string]ObjectChanges
}
type ObjectChanges map[ObjectIdentifier][]Change
type Change struct {
	OldValue string
	NewValue string
	Setter   string
}

func (r *ResultV2) AddChange(file string, objectID ObjectIdentifier, changes ...Change) {
	if r.FileChanges == nil {
		r.FileChanges = map[string]ObjectChanges{}
	}
	if _, ok := r.FileChanges[file]; !ok {
		r.FileChanges[file] = ObjectChanges{}
	}
	r.FileChanges[file][objectID] = append(r.FileChanges[file][objectID], changes...)
}

func (r ResultV2) Changes() []Change {
	seen := make(map[Change]struct{})
	var result []Change
	files := make([]string, 0)
	for f := range r.FileChanges {
		files = append(files, f)
	}
	sort.Strings(files)
	for _, f := range files {
		objChanges := r.FileChanges[f]
		for _, k := range objKeys(objChanges) {
			for _, change := range objChanges[k] {
				if _, ok := seen[change]; !ok {
					seen[change] = struct{}{}
					result = append(result, change)
				}
			}
		}
	}
	return result
}

func (r ResultV2) Objects() ObjectChanges {
	result := make(ObjectChanges)
	files := make([]string, 0)
	for f := range r.FileChanges {
		files = append(files, f)
	}
	sort.Strings(files)
	for _, f := range files {
		for obj, change := range r.FileChanges[f] {
			result[obj] = change
		}
	}
	return result
}

type TemplateData struct {
	AutomationObject NamespacedName
	Updated          Result
	Changed          ResultV2
	Values           map[string]string
}

type Update struct {
	File       string `json:"file"`
	APIVersion string `json:"apiVersion"`
	Kind       string `json:"kind"`
	Name       string `json:"name"`
	Namespace  string `json:"namespace"`
	From       string `json:"from"`
	To         string `json:"to"`
	Setter     string `json:"setter"`
	Image      string `json:"image"`
	Policy     string `json:"policy"`
}
type Case struct {
	Name       string            `json:"name"`
	Template   string            `json:"template"`
	Namespace  string            `json:"namespace"`
	Automation string            `json:"automation"`
	Values     map[string]string `json:"values,omitempty"`
	Updates    []Update          `json:"updates"`
	Expect     *Out              `json:"expect,omitempty"`
}
type Out struct {
	Out string `json:"out"`
	Err string `json:"err,omitempty"`
}

func main() {
	var cases []Case
	if err := json.NewDecoder(os.Stdin).Decode(&cases); err != nil {
		panic(err)
	}
	outs := []Out{}
	for i := range cases {
		c := cases[i]
		res := Result{Files: map[string]FileResult{}}
		var v2 ResultV2
		refs := map[string]imageRef{}
		for _, u := range c.Updates {
			key := u.Policy + " " + u.Image
			ref, ok := refs[key]
			if !ok {
				r, err := name.ParseReference(u.Image, name.WeakValidation)
				if err != nil {
					panic(err)
				}
				p := strings.SplitN(u.Policy, ":", 2)
				ref = imageRef{Reference: r, policy: NamespacedName{Namespace: p[0], Name: p[1]}}
				refs[key] = ref
			}
			oid := ObjectIdentifier{ResourceIdentifier{TypeMeta{u.APIVersion, u.Kind}, NameMeta{u.Name, u.Namespace}}}
			fr, ok := res.Files[u.File]
			if !ok {
				fr = FileResult{Objects: map[ObjectIdentifier][]ImageRef{}}
				res.Files[u.File] = fr
			}
			dup := false
			for _, n := range fr.Objects[oid] {
				if n == ImageRef(ref) {
					dup = true
				}
			}
			if !dup {
				fr.Objects[oid] = append(fr.Objects[oid], ref)
			}
			v2.AddChange(u.File, oid, Change{u.From, u.To, u.Setter})
		}
		v2.ImageResult = res
		data := TemplateData{NamespacedName{c.Namespace, c.Automation}, res, v2, c.Values}
		t, err := template.New("commit message").Funcs(sprig.HermeticTxtFuncMap()).Parse(c.Template)
		if err != nil {
			outs = append(outs, Out{Err: "parse: " + err.Error()})
			continue
		}
		b := &strings.Builder{}
		if err := t.Execute(b, data); err != nil {
			outs = append(outs, Out{Out: b.String(), Err: "exec: " + err.Error()})
			continue
		}
		outs = append(outs, Out{Out: b.String()})
	}
	for i := range cases {
		o := outs[i]
		cases[i].Expect = &o
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	_ = enc.Encode(cases)
	_ = fmt.Sprint
}
