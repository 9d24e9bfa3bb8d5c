package examples

// The image: `make image` builds deploy/Dockerfile with buildah, and what
// it holds runs. No container runtime starts here, so the image's root
// filesystem is taken out of buildah's storage (buildah from + mount) and
// the entrypoint is run in it the way a runtime would: chroot'ed into it,
// in new mount and pid namespaces, as the image's USER.

import (
	"bytes"
	"debug/elf"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"go.yaml.in/yaml/v3"
)

// makeVar reads `NAME ?= value` from the Makefile.
func makeVar(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + name + `\s*\?=\s*(\S+)\s*$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("Makefile: no %s ?= line", name)
	}
	return string(m[1])
}

// TestDeployImageName: the DaemonSet (the Helm chart's, rendered into
// deploy/kubernetes/) runs the image `make image` builds.
func TestDeployImageName(t *testing.T) {
	want := "ghcr.io/pausewatch/pausewatch:" + makeVar(t, "IMAGE_VERSION")
	b, err := os.ReadFile(daemonSetManifest)
	if err != nil {
		t.Fatal(err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(b))
	var images []string
	for {
		var doc struct {
			Kind string
			Spec struct {
				Template struct {
					Spec struct{ Containers []struct{ Image string } }
				}
			}
		}
		if err := dec.Decode(&doc); err != nil {
			break
		}
		for _, c := range doc.Spec.Template.Spec.Containers {
			images = append(images, c.Image)
		}
	}
	if len(images) != 1 || images[0] != want {
		t.Fatalf("%s images %v, want [%s] (the Makefile's IMAGE; the chart's appVersion or image.tag)", daemonSetManifest, images, want)
	}
}

// imageConfig is what TestImage checks of the image's OCI config.
type imageConfig struct {
	User       string
	Entrypoint []string
	Labels     map[string]string
}

// buildImage runs `make image` into a temporary buildah store and returns
// the image's name, its config and its root filesystem (buildah from +
// mount: the files a runtime would unpack).
func buildImage(t *testing.T) (image string, cfg imageConfig, rootfs string) {
	t.Helper()
	requireRoot(t)
	if _, err := exec.LookPath("buildah"); err != nil {
		t.Skip("buildah not installed (apt-get install buildah): the image is not built")
	}
	store := t.TempDir()
	buildah := func(args ...string) []byte {
		t.Helper()
		argv := append([]string{"--root", filepath.Join(store, "root"), "--runroot", filepath.Join(store, "run"),
			"--storage-driver", "vfs"}, args...)
		out, err := exec.Command("buildah", argv...).Output()
		if err != nil {
			var stderr []byte
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = ee.Stderr
			}
			t.Fatalf("buildah %v: %v\n%s", args, err, stderr)
		}
		return out
	}
	t.Cleanup(func() { buildah("rm", "--all"); buildah("rmi", "--all", "--force") })

	image = "ghcr.io/pausewatch/pausewatch:" + makeVar(t, "IMAGE_VERSION")
	mk := exec.Command("make", "-C", "..", "image",
		"BUILDAH_STORAGE=--root "+filepath.Join(store, "root")+" --runroot "+filepath.Join(store, "run")+" --storage-driver vfs")
	if out, err := mk.CombinedOutput(); err != nil {
		t.Fatalf("make image: %v\n%s", err, out)
	}

	var info struct {
		OCIv1 struct {
			Config imageConfig `json:"config"`
		}
	}
	if err := json.Unmarshal(buildah("inspect", "--type", "image", image), &info); err != nil {
		t.Fatal(err)
	}
	ctr := strings.TrimSpace(string(buildah("from", image)))
	rootfs = strings.TrimSpace(string(buildah("mount", ctr)))
	return image, info.OCIv1.Config, rootfs
}

func TestImage(t *testing.T) {
	image, cfg, rootfs := buildImage(t)
	t.Logf("%s: user %s, entrypoint %v, labels %v", image, cfg.User, cfg.Entrypoint, cfg.Labels)
	if cfg.User != "65534:65534" || strings.Join(cfg.Entrypoint, " ") != "/pausewatch" {
		t.Errorf("user %q, entrypoint %v; want 65534:65534 and /pausewatch", cfg.User, cfg.Entrypoint)
	}
	for _, l := range []string{"title", "description", "source", "licenses", "version", "revision"} {
		if cfg.Labels["org.opencontainers.image."+l] == "" {
			t.Errorf("no org.opencontainers.image.%s label", l)
		}
	}

	var files []string
	var size int64
	filepath.Walk(rootfs, func(p string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			files = append(files, strings.TrimPrefix(p, rootfs))
			size += fi.Size()
		}
		return nil
	})
	t.Logf("root filesystem: %v, %.1f MB", files, float64(size)/1e6)
	if strings.Join(files, " ") != "/pausewatch" {
		t.Errorf("image files %v, want only /pausewatch", files)
	}
	// Static: nothing to load from an image that has no libc.
	if f, err := elf.Open(filepath.Join(rootfs, "pausewatch")); err != nil {
		t.Fatal(err)
	} else {
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("/pausewatch has an ELF interpreter: not static")
			}
		}
		f.Close()
	}

	run := func(args ...string) (string, error) {
		cmd := exec.Command("/pausewatch", args...)
		cmd.Env = []string{}
		cmd.Dir = "/"
		cmd.SysProcAttr = &syscall.SysProcAttr{
			Chroot:     rootfs,
			Cloneflags: syscall.CLONE_NEWNS | syscall.CLONE_NEWPID | syscall.CLONE_NEWUTS | syscall.CLONE_NEWIPC,
			Credential: &syscall.Credential{Uid: 65534, Gid: 65534},
		}
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	out, err := run("--help")
	if err != nil || !strings.Contains(out, "-listen") || !strings.Contains(out, "-procfs") {
		t.Fatalf("/pausewatch --help in the image: %v\n%s", err, out)
	}
	out, err = run("version")
	if err != nil || !strings.HasPrefix(out, "pausewatch ") {
		t.Fatalf("/pausewatch version in the image: %v\n%s", err, out)
	}
	t.Logf("in the image as uid 65534: --help ok, %s", strings.TrimSpace(out))
}
