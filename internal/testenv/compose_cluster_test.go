package testenv_test

import (
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// clusterFile is the repository's docker-compose.cluster.yml, and
// caddyFile the load balancer's configuration it mounts.
var (
	clusterFile = filepath.Join("..", "..", "docker-compose.cluster.yml")
	caddyFile   = filepath.Join("..", "..", "deploy", "cluster.Caddyfile")
)

// docker-compose.cluster.yml runs two ferry nodes, built as
// docker-compose.yml builds ferry, on a cluster of three NATS servers with
// JetStream (streams kept 3 times) and docker-compose.yml's MinIO, behind
// Caddy: the only service published beyond 127.0.0.1, health-checking the
// nodes on /readyz, and the only proxy they believe.
func TestComposeCluster(t *testing.T) {
	cfg := configOf(t, clusterFile, secrets...)
	base := config(t, secrets...)

	nats := []string{"nats1", "nats2", "nats3"}
	var clientURLs []string
	for _, name := range nats {
		clientURLs = append(clientURLs, "nats://"+name+":4222")
		s := service(t, cfg, name)
		cmd := flat(s.Command)
		if !strings.HasPrefix(s.Image, "nats:") || !strings.Contains(cmd, "--jetstream") ||
			!strings.Contains(cmd, "--name "+name) || !strings.Contains(cmd, "--cluster_name ferry") {
			t.Errorf("%s: image %q, command %v; want nats with JetStream, named %s, in cluster ferry", name, s.Image, s.Command, name)
		}
		for _, other := range nats {
			if other != name && !strings.Contains(cmd, "nats://"+other+":6222") {
				t.Errorf("%s has no route to %s: %v", name, other, s.Command)
			}
		}
		if !hasVolume(s, name+"-data", "/data") {
			t.Errorf("%s volumes = %v, want %s-data at /data", name, s.Volumes, name)
		}
		if !strings.Contains(flat(s.Healthcheck.Test), "/healthz") {
			t.Errorf("%s healthcheck %v, want NATS's /healthz", name, s.Healthcheck.Test)
		}
	}

	lb := service(t, cfg, "lb")
	proxy := lb.Networks["cluster"].IPv4Address
	if !strings.HasPrefix(lb.Image, "caddy:") || !hasPort(lb, "8080") || proxy == "" {
		t.Errorf("lb: image %q, ports %v, address %q; want caddy publishing 8080 at a fixed address", lb.Image, lb.Ports, proxy)
	}
	caddyAbs, err := filepath.Abs(caddyFile)
	if err != nil {
		t.Fatal(err)
	}
	if !hasVolume(lb, caddyAbs, "/etc/caddy/Caddyfile") {
		t.Errorf("lb volumes = %v, want %s at /etc/caddy/Caddyfile", lb.Volumes, caddyAbs)
	}
	caddy, err := os.ReadFile(caddyFile)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(caddy), "health_uri /readyz") {
		t.Errorf("%s does not health-check the nodes on /readyz", caddyFile)
	}

	nodes := []string{"ferry1", "ferry2"}
	ferry := service(t, base, "ferry")
	for _, name := range nodes {
		s := service(t, cfg, name)
		if flat(s.Build) != flat(ferry.Build) {
			t.Errorf("%s build = %v, want docker-compose.yml's %v", name, s.Build, ferry.Build)
		}
		if len(s.Ports) != 0 {
			t.Errorf("%s publishes %v: clients come through lb", name, s.Ports)
		}
		if !hasVolume(s, name+"-data", "/data") {
			t.Errorf("%s volumes = %v, want %s-data at /data", name, s.Volumes, name)
		}
		env := s.Environment
		if got := strings.Split(env["FERRY_NATS"], ","); !slices.Equal(got, clientURLs) || env["FERRY_NATS_REPLICAS"] != "3" {
			t.Errorf("%s: FERRY_NATS=%q, FERRY_NATS_REPLICAS=%q; want %v and 3", name, env["FERRY_NATS"], env["FERRY_NATS_REPLICAS"], clientURLs)
		}
		for k, v := range ferry.Environment {
			if strings.HasPrefix(k, "FERRY_S3_") && env[k] != v {
				t.Errorf("%s: %s = %q, want docker-compose.yml's %q", name, k, env[k], v)
			}
		}
		if env["FERRY_TRUSTED_PROXIES"] != proxy {
			t.Errorf("%s believes proxies %q, want lb's address %q alone", name, env["FERRY_TRUSTED_PROXIES"], proxy)
		}
		if !strings.Contains(string(caddy), name+":8080") {
			t.Errorf("%s does not send requests to %s:8080", caddyFile, name)
		}
		if !strings.Contains(flat(s.Healthcheck.Test), "/readyz") {
			t.Errorf("%s healthcheck %v, want /readyz", name, s.Healthcheck.Test)
		}
		deps := map[string]string{"minio": "service_healthy", "mc": "service_completed_successfully"}
		for _, n := range nats {
			deps[n] = "service_healthy"
		}
		for to, cond := range deps {
			if got := s.DependsOn[to].Condition; got != cond {
				t.Errorf("%s depends on %s with condition %q, want %q", name, to, got, cond)
			}
		}
		if lb.DependsOn[name].Condition != "service_healthy" {
			t.Errorf("lb does not wait for %s to be healthy", name)
		}
	}

	// MinIO and mc are docker-compose.yml's.
	for _, name := range []string{"minio", "mc"} {
		got, want := service(t, cfg, name), service(t, base, name)
		got.Networks, want.Networks = nil, nil
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s differs from docker-compose.yml's:\n%+v\nwant\n%+v", name, got, want)
		}
	}

	// Only the load balancer answers beyond this machine.
	for name, s := range cfg.Services {
		for _, p := range s.Ports {
			if name != "lb" && !strings.Contains(fmt.Sprint(p), "127.0.0.1") {
				t.Errorf("%s publishes %v beyond 127.0.0.1", name, p)
			}
		}
	}
}
