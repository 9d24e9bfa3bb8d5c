package main

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/exporter-toolkit/web"
	"golang.org/x/crypto/bcrypt"

	"github.com/pausewatch/pausewatch/agent"
	"github.com/pausewatch/pausewatch/agent/source"
	promexp "github.com/pausewatch/pausewatch/exporters/prometheus"
)

// testPKI writes a CA and a server certificate for 127.0.0.1 signed by it
// (and a client certificate) under dir, and returns their paths.
type testPKI struct{ ca, cert, key, clientCert, clientKey string }

func newTestPKI(t *testing.T, dir string) testPKI {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pausewatch test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	write := func(name, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	leaf := func(serial int64, usage x509.ExtKeyUsage, name string) (string, string) {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			IPAddresses: []net.IP{net.ParseIP("127.0.0.1")},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &k.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		kder, err := x509.MarshalECPrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".crt", "CERTIFICATE", der), write(name+".key", "EC PRIVATE KEY", kder)
	}
	p := testPKI{ca: write("ca.crt", "CERTIFICATE", caDER)}
	p.cert, p.key = leaf(2, x509.ExtKeyUsageServerAuth, "agent")
	p.clientCert, p.clientKey = leaf(3, x509.ExtKeyUsageClientAuth, "operator")
	return p
}

// serveTestAgent serves the agent's real mux through web.Serve, as
// agentMain does, with the given web config file, and returns its address.
func serveTestAgent(t *testing.T, webConfig string, withPprof bool, stream *agent.Stream) string {
	t.Helper()
	if err := web.Validate(webConfig); err != nil {
		t.Fatalf("web.Validate: %v", err)
	}
	reg := prometheus.NewRegistry()
	prom := promexp.New(promexp.Options{})
	reg.MustRegister(prom, streamCollector{stream})
	src := source.New(source.Config{ProcFS: "/proc"})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: newMux(reg, src, nil, prom, stream, withPprof), ReadHeaderTimeout: 10 * time.Second}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	go web.Serve(ln, srv, &web.FlagConfig{WebConfigFile: &webConfig}, log)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// TestWebConfig: with a web config of TLS and basic auth (a bcrypt hash),
// the agent's endpoints refuse what has no credentials, wrong ones, or no
// TLS, and answer watch's and report's client built from their flags.
func TestWebConfig(t *testing.T) {
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(cfg, []byte("tls_server_config:\n  cert_file: "+pki.cert+"\n  key_file: "+pki.key+
		"\nbasic_auth_users:\n  prometheus: "+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	passFile := filepath.Join(dir, "password")
	if err := os.WriteFile(passFile, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stream := agent.NewStream(1)
	addr := serveTestAgent(t, cfg, false, stream)
	base := "https://" + addr

	good := clientFlags{agent: base, caFile: pki.ca, user: "prometheus", passwordFile: passFile}
	for _, tc := range []struct {
		name string
		cf   clientFlags
		path string
		want int // status; 0: the request fails (TLS)
	}{
		{"no credentials", clientFlags{agent: base, caFile: pki.ca}, "/metrics", http.StatusUnauthorized},
		{"no credentials, API", clientFlags{agent: base, caFile: pki.ca}, "/api/processes", http.StatusUnauthorized},
		{"no credentials, health", clientFlags{agent: base, caFile: pki.ca}, "/readyz", http.StatusUnauthorized},
		{"wrong password", clientFlags{agent: base, caFile: pki.ca, user: "prometheus", passwordFile: cfg}, "/metrics", http.StatusUnauthorized},
		{"unknown user", clientFlags{agent: base, caFile: pki.ca, user: "nobody", passwordFile: passFile}, "/metrics", http.StatusUnauthorized},
		{"system CAs do not know the agent", clientFlags{agent: base, user: "prometheus", passwordFile: passFile}, "/metrics", 0},
		{"scrape", good, "/metrics", http.StatusOK},
		{"API", good, "/api/requests", http.StatusOK},
		{"pprof not asked for", good, "/debug/pprof/", http.StatusNotFound},
		{"pprof profile not asked for", good, "/debug/pprof/profile", http.StatusNotFound},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.cf.newClient(5 * time.Second)
			if err != nil {
				t.Fatal(err)
			}
			resp, err := c.get(context.Background(), tc.path)
			if tc.want == 0 {
				var uerr x509.UnknownAuthorityError
				if err == nil || !errors.As(err, &uerr) {
					t.Fatalf("GET %s: %v, want an unknown-authority TLS error", tc.path, err)
				}
				if noAgent(err) {
					t.Fatalf("a TLS error counts as no agent: watch would load probes instead of saying why")
				}
				return
			}
			if err != nil {
				t.Fatalf("GET %s: %v", tc.path, err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.want {
				t.Fatalf("GET %s: %s, want %d\n%s", tc.path, resp.Status, tc.want, body)
			}
			if tc.path == "/metrics" && tc.want == http.StatusOK && !bytes.Contains(body, []byte("pausewatch_stream_clients_refused_total")) {
				t.Fatalf("scrape lacks the agent's series:\n%s", body)
			}
		})
	}

	t.Run("plain HTTP to the TLS port", func(t *testing.T) {
		resp, err := http.Get("http://" + addr + "/metrics")
		if err != nil {
			return // refused: fine
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			t.Fatal("plain HTTP scrape answered 200")
		}
	})

	// watch follows the TLS agent with credentials; a second watch is past
	// the cap (1 here) and is told so, exit 1, rather than loading probes.
	t.Run("watch", func(t *testing.T) {
		c, err := good.newClient(0)
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		var first bytes.Buffer
		done := make(chan int, 1)
		go func() {
			code, _ := follow(ctx, c, func(pauseJSON) {}, &syncWriter{w: &first})
			done <- code
		}()
		deadline := time.Now().Add(10 * time.Second)
		for n, _ := stream.Subscribers(); n == 0; n, _ = stream.Subscribers() {
			if time.Now().After(deadline) {
				t.Fatal("watch never subscribed")
			}
			time.Sleep(10 * time.Millisecond)
		}
		var second bytes.Buffer
		code, followed := follow(context.Background(), c, func(pauseJSON) {}, &second)
		if !followed || code != 1 || !strings.Contains(second.String(), "503") {
			t.Errorf("second watch: followed %v, exit %d, stderr %q; want the agent's 503 and exit 1", followed, code, second.String())
		}
		if stream.Refused() != 1 {
			t.Errorf("Refused() = %d, want 1", stream.Refused())
		}
		cancel()
		if code := <-done; code != 0 {
			t.Errorf("first watch exit %d after Ctrl-C, want 0", code)
		}

		var unauth bytes.Buffer
		nc, _ := (&clientFlags{agent: base, caFile: pki.ca}).newClient(0)
		code, followed = follow(context.Background(), nc, func(pauseJSON) {}, &unauth)
		if !followed || code != 1 || !strings.Contains(unauth.String(), "credentials") {
			t.Errorf("watch without credentials: followed %v, exit %d, stderr %q", followed, code, unauth.String())
		}
	})
}

type syncWriter struct{ w io.Writer }

func (s *syncWriter) Write(p []byte) (int, error) { return s.w.Write(p) }

// TestPprofOnlyWhenAsked: /debug/pprof answers with --pprof only.
func TestPprofOnlyWhenAsked(t *testing.T) {
	for _, on := range []bool{false, true} {
		addr := serveTestAgent(t, "", on, agent.NewStream(0))
		paths := []string{"/debug/pprof/", "/debug/pprof/goroutine?debug=1", "/debug/pprof/heap"}
		if !on {
			// A CPU profile would take its seconds (30 by default) to
			// answer: asked only where it must not exist.
			paths = append(paths, "/debug/pprof/profile", "/debug/pprof/cmdline", "/debug/pprof/trace")
		}
		for _, path := range paths {
			resp, err := http.Get("http://" + addr + path)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if want := map[bool]int{false: 404, true: 200}[on]; resp.StatusCode != want {
				t.Errorf("--pprof=%v: GET %s: %s, want %d", on, path, resp.Status, want)
			}
		}
	}
}

// TestClientFlags: the client refuses what would leak or cannot work.
func TestClientFlags(t *testing.T) {
	t.Setenv("PAUSEWATCH_PASSWORD", "")
	os.Unsetenv("PAUSEWATCH_PASSWORD")
	for _, tc := range []struct {
		name string
		cf   clientFlags
		env  string // PAUSEWATCH_PASSWORD
		want string // error substring; "" for none
	}{
		{"default", clientFlags{agent: "http://127.0.0.1:9464"}, "", ""},
		{"not a URL", clientFlags{agent: "127.0.0.1:9464"}, "", "want an http or https URL"},
		{"credentials in URL", clientFlags{agent: "https://u:p@host:9464"}, "", "no credentials in the URL"},
		{"user without password", clientFlags{agent: "https://host:9464", user: "u"}, "", "without a password"},
		{"user with env password", clientFlags{agent: "https://host:9464", user: "u"}, "p", ""},
		{"password in clear to another host", clientFlags{agent: "http://10.0.0.1:9464", user: "u"}, "p", "in clear"},
		{"password in clear to loopback", clientFlags{agent: "http://localhost:9464", user: "u"}, "p", ""},
		{"CA for http", clientFlags{agent: "http://host:9464", caFile: "/etc/hostname"}, "", "for an https --agent"},
		{"CA file without PEM", clientFlags{agent: "https://host:9464", caFile: "/etc/hostname"}, "", "no PEM certificate"},
		{"cert without key", clientFlags{agent: "https://host:9464", certFile: "/etc/hostname"}, "", "go together"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.env != "" {
				t.Setenv("PAUSEWATCH_PASSWORD", tc.env)
			}
			_, err := tc.cf.newClient(0)
			if (err == nil) != (tc.want == "") || (err != nil && !strings.Contains(err.Error(), tc.want)) {
				t.Fatalf("newClient: %v, want %q", err, tc.want)
			}
		})
	}
}

// The client certificate pair is usable against an agent that asks for one.
func TestWebConfigClientCert(t *testing.T) {
	dir := t.TempDir()
	pki := newTestPKI(t, dir)
	cfg := filepath.Join(dir, "web.yml")
	if err := os.WriteFile(cfg, []byte("tls_server_config:\n  cert_file: "+pki.cert+"\n  key_file: "+pki.key+
		"\n  client_auth_type: RequireAndVerifyClientCert\n  client_ca_file: "+pki.ca+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := "https://" + serveTestAgent(t, cfg, false, agent.NewStream(0))
	for _, tc := range []struct {
		name string
		cf   clientFlags
		ok   bool
	}{
		{"no client certificate", clientFlags{agent: base, caFile: pki.ca}, false},
		{"client certificate", clientFlags{agent: base, caFile: pki.ca, certFile: pki.clientCert, keyFile: pki.clientKey}, true},
	} {
		c, err := tc.cf.newClient(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := c.get(context.Background(), "/metrics")
		if err == nil {
			resp.Body.Close()
		}
		if ok := err == nil && resp.StatusCode == 200; ok != tc.ok {
			t.Errorf("%s: err %v; want success %v", tc.name, err, tc.ok)
		}
	}
}
