package runtime

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	corev1 "k8s.io/api/core/v1"

	"github.com/peapod/peapod/runtime/image"
	"github.com/peapod/peapod/runtime/sandbox"
)

func TestCommandLine(t *testing.T) {
	cfg := image.Config{Entrypoint: []string{"/entry", "-v"}, Cmd: []string{"serve", "--port=80"}}
	vars := map[string]string{"PORT": "8080"}
	lookup := func(n string) (string, bool) { v, ok := vars[n]; return v, ok }
	tests := []struct {
		name          string
		command, args []string
		cfg           image.Config
		want          []string
	}{
		{name: "image entrypoint and cmd", cfg: cfg, want: []string{"/entry", "-v", "serve", "--port=80"}},
		{name: "command replaces entrypoint, drops cmd", command: []string{"/bin/sh"}, cfg: cfg, want: []string{"/bin/sh"}},
		{name: "command and args", command: []string{"/bin/sh", "-c"}, args: []string{"echo"}, cfg: cfg, want: []string{"/bin/sh", "-c", "echo"}},
		{name: "args replace cmd", args: []string{"run", "--port=$(PORT)"}, cfg: cfg, want: []string{"/entry", "-v", "run", "--port=8080"}},
		{name: "args without entrypoint", args: []string{"/bin/true"}, cfg: image.Config{Cmd: []string{"x"}}, want: []string{"/bin/true"}},
		{name: "cmd only", cfg: image.Config{Cmd: []string{"/bin/sh"}}, want: []string{"/bin/sh"}},
		{name: "image values are not expanded", cfg: image.Config{Cmd: []string{"$(PORT)"}}, want: []string{"$(PORT)"}},
		{name: "nothing", want: nil},
	}
	for _, tt := range tests {
		c := &corev1.Container{Command: tt.command, Args: tt.args}
		got, err := commandLine(c, tt.cfg, &expansion{lookup: lookup})
		if err != nil {
			t.Fatal(err)
		}
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("%s (-want +got):\n%s", tt.name, diff)
		}
	}
}

// TestImageEnv checks the image's Env under the container's, and that
// $(VAR) in the container's env and args sees only the container's own.
func TestImageEnv(t *testing.T) {
	pod := testPod()
	tests := []struct {
		name     string
		image    []string
		env      []corev1.EnvVar
		args     []string
		wantEnv  []string
		wantArgs []string
	}{
		{
			name:    "no image env",
			env:     []corev1.EnvVar{{Name: "A", Value: "1"}},
			wantEnv: []string{"PATH=" + defaultPath, "HOSTNAME=web", "A=1"},
		},
		{
			name:    "image env under the container's",
			image:   []string{"PATH=/img/bin", "LANG=C", "A=image"},
			env:     []corev1.EnvVar{{Name: "A", Value: "1"}, {Name: "B", Value: "2"}},
			wantEnv: []string{"PATH=/img/bin", "LANG=C", "A=1", "HOSTNAME=web", "B=2"},
		},
		{
			name:    "container PATH wins",
			image:   []string{"PATH=/img/bin"},
			env:     []corev1.EnvVar{{Name: "PATH", Value: "/mine"}},
			wantEnv: []string{"PATH=/mine", "HOSTNAME=web"},
		},
		{
			name:     "image env is not visible to $(VAR)",
			image:    []string{"LANG=C"},
			env:      []corev1.EnvVar{{Name: "L", Value: "$(LANG)"}, {Name: "M", Value: "x$(L)"}},
			args:     []string{"$(LANG)", "$(M)"},
			wantEnv:  []string{"LANG=C", "PATH=" + defaultPath, "HOSTNAME=web", "L=$(LANG)", "M=x$(LANG)"},
			wantArgs: []string{"/bin/sh", "$(LANG)", "x$(LANG)"},
		},
		{
			name:    "value with equals signs, and a name without one",
			image:   []string{"OPTS=a=b", "EMPTY"},
			wantEnv: []string{"OPTS=a=b", "EMPTY=", "PATH=" + defaultPath, "HOSTNAME=web"},
		},
	}
	for _, tt := range tests {
		c := &corev1.Container{Name: "app", Command: []string{"/bin/sh"}, Args: tt.args, Env: tt.env}
		spec, err := buildSpec(&specInput{
			pod: pod, c: c, sandbox: sandboxLayoutForTest(),
			image: &image.Image{Config: image.Config{Env: tt.image}}, user: &execUser{},
		})
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if diff := cmp.Diff(tt.wantEnv, spec.Env); diff != "" {
			t.Errorf("%s: env (-want +got):\n%s", tt.name, diff)
		}
		if tt.wantArgs != nil {
			if diff := cmp.Diff(tt.wantArgs, spec.Args); diff != "" {
				t.Errorf("%s: args (-want +got):\n%s", tt.name, diff)
			}
		}
	}
}

func TestImageWorkingDir(t *testing.T) {
	for _, tt := range []struct{ container, image, want string }{
		{"", "", ""},
		{"", "/srv", "/srv"},
		{"/work", "/srv", "/work"},
		{"/work", "", "/work"},
	} {
		c := &corev1.Container{Name: "app", Command: []string{"x"}, WorkingDir: tt.container}
		spec, err := buildSpec(&specInput{
			pod: testPod(), c: c, sandbox: sandboxLayoutForTest(),
			image: &image.Image{Config: image.Config{WorkingDir: tt.image}}, user: &execUser{},
		})
		if err != nil || spec.Cwd != tt.want {
			t.Errorf("workingDir %q, image %q: cwd %q, %v; want %q", tt.container, tt.image, spec.Cwd, err, tt.want)
		}
	}
}

func sandboxLayoutForTest() *sandbox.Sandbox {
	return sandbox.Layout("/run/peapod/pods/1234", false)
}
