package main

import (
	"bytes"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/relayd/relayd/loadtest"
)

// k8sContainer is the part of a pod's container the test reads.
type k8sContainer struct {
	Name    string   `yaml:"name"`
	Command []string `yaml:"command"`
	Args    []string `yaml:"args"`
	Env     []struct {
		Name  string `yaml:"name"`
		Value string `yaml:"value"`
	} `yaml:"env"`
}

type k8sDoc struct {
	Kind     string `yaml:"kind"`
	Metadata struct {
		Name string `yaml:"name"`
	} `yaml:"metadata"`
	Spec struct {
		CompletionMode string `yaml:"completionMode"`
		Completions    int    `yaml:"completions"`
		Parallelism    int    `yaml:"parallelism"`
		Template       struct {
			Spec struct {
				InitContainers []k8sContainer `yaml:"initContainers"`
				Containers     []k8sContainer `yaml:"containers"`
				Volumes        []struct {
					PVC struct {
						ClaimName string `yaml:"claimName"`
					} `yaml:"persistentVolumeClaim"`
				} `yaml:"volumes"`
			} `yaml:"spec"`
		} `yaml:"template"`
	} `yaml:"spec"`
}

func readK8s(t *testing.T, path string) []k8sDoc {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var docs []k8sDoc
	dec := yaml.NewDecoder(f)
	for {
		var d k8sDoc
		if err := dec.Decode(&d); errors.Is(err, io.EOF) {
			return docs
		} else if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		docs = append(docs, d)
	}
}

// The distributed-load manifests do what the README says, run here as
// processes instead of pods: each load pod's command line (its $(VARS)
// filled in, the shared volume a directory, a 1 s run at 200/s) against a real
// sink, then the merge step's two containers on what they wrote: one
// merged result whose counts are the pods' sums, and one report.
func TestK8sDistributedLoad(t *testing.T) {
	docs := readK8s(t, "../../deploy/k8s/load-job.yaml")
	merge := readK8s(t, "../../deploy/k8s/merge-job.yaml")
	var load *k8sDoc
	pvc := ""
	for i, d := range docs {
		switch d.Kind {
		case "Job":
			load = &docs[i]
		case "PersistentVolumeClaim":
			pvc = d.Metadata.Name
		}
	}
	if load == nil || pvc == "" || len(merge) != 1 || merge[0].Kind != "Job" {
		t.Fatalf("load-job.yaml: a PVC and a Job; merge-job.yaml: one Job")
	}
	s := load.Spec
	if s.CompletionMode != "Indexed" || s.Completions < 2 || s.Parallelism != s.Completions {
		t.Fatalf("load job: mode %q completions %d parallelism %d: want Indexed, all at once", s.CompletionMode, s.Completions, s.Parallelism)
	}
	for _, d := range []*k8sDoc{load, &merge[0]} {
		if v := d.Spec.Template.Spec.Volumes; len(v) != 1 || v[0].PVC.ClaimName != pvc {
			t.Fatalf("%s does not mount the results claim %q", d.Metadata.Name, pvc)
		}
	}
	sink := sinkProc(t)
	results := t.TempDir()
	// fill replaces what Kubernetes would: $(VAR) from the env, the volume.
	fill := func(c k8sContainer, index string) []string {
		if len(c.Command) != 1 || c.Command[0] != "/usr/local/bin/relayd" {
			t.Fatalf("container %s runs %v", c.Name, c.Command)
		}
		vars := map[string]string{"INDEX": index}
		for _, e := range c.Env {
			if e.Value != "" {
				vars[e.Name] = e.Value
			}
		}
		vars["TARGET"] = sink
		var out []string
		for _, a := range c.Args {
			for k, v := range vars {
				a = strings.ReplaceAll(a, "$("+k+")", v)
			}
			a = strings.ReplaceAll(a, "/results", results)
			// A short run at a rate any test machine keeps (a CI run with
			// -race under load started 1,228 of the manifest's 2,000/s, and
			// a missed rate rightly fails the pod).
			switch {
			case strings.HasPrefix(a, "--duration="):
				a = "--duration=1s"
			case strings.HasPrefix(a, "--rate="):
				a = "--rate=200"
			}
			out = append(out, a)
		}
		return out
	}
	const pods = 2
	var want loadtest.Result
	for i := range pods {
		args := fill(load.Spec.Template.Spec.Containers[0], string(rune('0'+i)))
		if out, err := exec.Command(relaydBin, args...).CombinedOutput(); err != nil {
			t.Fatalf("load pod %d %v: %v\n%s", i, args, err, out)
		}
		b, err := os.ReadFile(filepath.Join(results, "load-"+string(rune('0'+i))+".json"))
		if err != nil {
			t.Fatal(err)
		}
		r, err := loadtest.ParseResult(b)
		if err != nil {
			t.Fatal(err)
		}
		want.Sessions += r.Sessions
		want.Attempts += r.Attempts
	}
	ms := merge[0].Spec.Template.Spec
	if len(ms.InitContainers) != 1 || len(ms.Containers) != 1 {
		t.Fatal("merge job: a merge init container, then the report")
	}
	out, err := exec.Command(relaydBin, fill(ms.InitContainers[0], "")...).Output()
	if err != nil {
		t.Fatalf("merge: %v", err)
	}
	m, err := loadtest.ParseResult(bytes.TrimSpace(out))
	if err != nil {
		t.Fatal(err)
	}
	if m.Procs != pods || m.Sessions != want.Sessions || m.Attempts != want.Attempts || m.Sessions == 0 {
		t.Fatalf("merged %d procs %d sessions %d attempts; the pods made %d and %d", m.Procs, m.Sessions, m.Attempts, want.Sessions, want.Attempts)
	}
	page, err := exec.Command(relaydBin, fill(ms.Containers[0], "")...).Output()
	if err != nil {
		t.Fatalf("report: %v", err)
	}
	if !bytes.HasPrefix(page, []byte("<!DOCTYPE html>")) || bytes.Count(page, []byte(`<tr class="run">`)) != 1 {
		t.Fatalf("the report is not one page of one run (%d bytes)", len(page))
	}
}
