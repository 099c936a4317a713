package testenv_test

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/ferryhq/ferry/internal/testenv"
)

// composeFile is the repository's docker-compose.yml, relative to this
// package.
var composeFile = filepath.Join("..", "..", "docker-compose.yml")

// composeService is the part of `docker-compose config` output the tests
// look at. Fields whose shape differs between docker-compose versions are
// left as any.
type composeService struct {
	Image       string
	Build       any
	Command     any
	Entrypoint  any
	Environment map[string]string
	DependsOn   map[string]struct{ Condition string } `yaml:"depends_on"`
	Healthcheck struct{ Test any }
	Ports       []any
	Volumes     []any
	Networks    map[string]struct {
		IPv4Address string `yaml:"ipv4_address"`
	}
}

type composeConfig struct {
	Services map[string]composeService
	Volumes  map[string]any
}

// config runs `docker-compose config`, which checks the file and prints it
// with variables substituted, and parses the result. env holds FERRY_S3_*
// overrides; those of the caller's environment are left out.
func config(t *testing.T, env ...string) composeConfig {
	t.Helper()
	return configOf(t, composeFile, env...)
}

// configOf is config of the compose file file.
func configOf(t *testing.T, file string, env ...string) composeConfig {
	t.Helper()
	bin := testenv.Program(t, "docker-compose")
	cmd := exec.Command(bin, "-f", file, "config")
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "FERRY_S3_") && !strings.HasPrefix(kv, "MINIO_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, stderr.String())
	}
	var cfg composeConfig
	if err := yaml.Unmarshal(out, &cfg); err != nil {
		t.Fatalf("parsing docker-compose config output: %v\n%s", err, out)
	}
	return cfg
}

func service(t *testing.T, cfg composeConfig, name string) composeService {
	t.Helper()
	s, ok := cfg.Services[name]
	if !ok {
		t.Fatalf("no service %q in the compose file", name)
	}
	return s
}

// flat renders a field of any shape as one string to search in.
func flat(v any) string { return fmt.Sprint(v) }

func hasPort(s composeService, port string) bool {
	return slices.ContainsFunc(s.Ports, func(p any) bool {
		if m, ok := p.(map[string]any); ok {
			return fmt.Sprint(m["target"]) == port
		}
		return strings.HasSuffix(strings.TrimSuffix(fmt.Sprint(p), "/tcp"), ":"+port)
	})
}

func hasVolume(s composeService, source, target string) bool {
	return slices.ContainsFunc(s.Volumes, func(v any) bool {
		if m, ok := v.(map[string]any); ok {
			return m["source"] == source && m["target"] == target
		}
		return strings.HasPrefix(fmt.Sprint(v), source+":"+target)
	})
}

// secrets are the passwords the file requires.
var secrets = []string{"MINIO_ROOT_PASSWORD=root-secret-1", "FERRY_S3_SECRET_KEY=ferry-secret-1"}

func TestComposeServices(t *testing.T) {
	cfg := config(t, secrets...)
	minio, mc, ferry := service(t, cfg, "minio"), service(t, cfg, "mc"), service(t, cfg, "ferry")

	if !strings.HasPrefix(minio.Image, "minio/minio") {
		t.Errorf("minio image = %q", minio.Image)
	}
	if cmd := flat(minio.Command); !strings.Contains(cmd, "server") || !strings.Contains(cmd, "--console-address :9001") {
		t.Errorf("minio command = %v, want a server with its console on :9001", minio.Command)
	}
	if !hasPort(minio, "9000") || !hasPort(minio, "9001") {
		t.Errorf("minio ports = %v, want 9000 and 9001", minio.Ports)
	}
	// MinIO answers the operator on this machine only; ferry is the service.
	for _, p := range minio.Ports {
		if !strings.Contains(fmt.Sprint(p), "127.0.0.1") {
			t.Errorf("minio port %v is published beyond 127.0.0.1", p)
		}
	}
	if !hasVolume(minio, "minio-data", "/data") {
		t.Errorf("minio volumes = %v, want the named volume minio-data at /data", minio.Volumes)
	}
	if _, ok := cfg.Volumes["minio-data"]; !ok {
		t.Errorf("top-level volumes = %v, want minio-data declared", cfg.Volumes)
	}

	if !strings.HasPrefix(mc.Image, "minio/mc") {
		t.Errorf("mc image = %q", mc.Image)
	}
	if cmd := flat(mc.Entrypoint) + " " + flat(mc.Command); !strings.Contains(cmd, "http://minio:9000") || !strings.Contains(cmd, "mc mb") ||
		!strings.Contains(cmd, "mc admin user add") || !strings.Contains(cmd, "mc admin policy attach") {
		t.Errorf("mc runs %q, want an alias for http://minio:9000, mc mb, and ferry's own user with a bucket policy", cmd)
	}

	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(flat(ferry.Build), root) {
		t.Errorf("ferry build = %v, want the repository's Dockerfile (context %s)", ferry.Build, root)
	}
	if !hasPort(ferry, "8080") {
		t.Errorf("ferry ports = %v, want 8080", ferry.Ports)
	}

	deps := []struct {
		from, to, condition string
	}{
		{"mc", "minio", "service_healthy"},
		{"ferry", "minio", "service_healthy"},
		{"ferry", "mc", "service_completed_successfully"},
	}
	for _, d := range deps {
		if got := cfg.Services[d.from].DependsOn[d.to].Condition; got != d.condition {
			t.Errorf("%s depends on %s with condition %q, want %q", d.from, d.to, got, d.condition)
		}
	}
	for _, name := range []string{"minio", "ferry"} {
		if cfg.Services[name].Healthcheck.Test == nil {
			t.Errorf("%s has no healthcheck", name)
		}
	}
}

// TestComposeWiring checks that every service takes its part of the
// configuration from the same variables: ferry's credentials are the user mc
// creates for it, not MinIO's root user, and the bucket mc creates is the one
// ferry uses. With the defaults and with overrides, so that a value typed
// twice cannot pass. Without the passwords, the file refuses to run.
func TestComposeWiring(t *testing.T) {
	tests := []struct {
		name                string
		env                 []string
		access, secret, bkt string
	}{
		{"defaults", secrets, "ferry", "ferry-secret-1", "ferry"},
		{"overridden", append([]string{"FERRY_S3_ACCESS_KEY=alice", "FERRY_S3_BUCKET=rabbit-hole", "MINIO_ROOT_USER=admin"}, secrets...), "alice", "ferry-secret-1", "rabbit-hole"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := config(t, tc.env...)
			minio, mc, ferry := service(t, cfg, "minio"), service(t, cfg, "mc"), service(t, cfg, "ferry")
			want := map[string]string{
				"FERRY_S3_ENDPOINT":   "http://minio:9000",
				"FERRY_S3_BUCKET":     tc.bkt,
				"FERRY_S3_REGION":     "us-east-1",
				"FERRY_S3_ACCESS_KEY": tc.access,
				"FERRY_S3_SECRET_KEY": tc.secret,
			}
			for k, v := range want {
				if ferry.Environment[k] != v || mc.Environment[k] != v && k != "FERRY_S3_ENDPOINT" && k != "FERRY_S3_REGION" {
					t.Errorf("%s = %q for ferry, %q for mc; want %q", k, ferry.Environment[k], mc.Environment[k], v)
				}
			}
			if _, set := ferry.Environment["FERRY_S3_PUBLIC_ENDPOINT"]; set {
				t.Error("FERRY_S3_PUBLIC_ENDPOINT is set: downloads go through ferry")
			}
			root := minio.Environment["MINIO_ROOT_USER"]
			if root == ferry.Environment["FERRY_S3_ACCESS_KEY"] || minio.Environment["MINIO_ROOT_PASSWORD"] == ferry.Environment["FERRY_S3_SECRET_KEY"] {
				t.Errorf("ferry uses MinIO's root credentials (%q)", root)
			}
			if mc.Environment["MINIO_ROOT_USER"] != root || mc.Environment["MINIO_ROOT_PASSWORD"] != minio.Environment["MINIO_ROOT_PASSWORD"] {
				t.Errorf("mc's root credentials differ from MinIO's")
			}
			if !strings.Contains(flat(mc.Command), "FERRY_S3_BUCKET") {
				t.Errorf("mc creates its bucket with %v, not from FERRY_S3_BUCKET", mc.Command)
			}
		})
	}
	t.Run("without passwords", func(t *testing.T) {
		bin := testenv.Program(t, "docker-compose")
		cmd := exec.Command(bin, "-f", composeFile, "config")
		for _, kv := range os.Environ() {
			if !strings.HasPrefix(kv, "FERRY_S3_") && !strings.HasPrefix(kv, "MINIO_") {
				cmd.Env = append(cmd.Env, kv)
			}
		}
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), "MINIO_ROOT_PASSWORD") {
			t.Errorf("docker-compose config without passwords: %v\n%s; want a refusal naming MINIO_ROOT_PASSWORD", err, out)
		}
	})
}
