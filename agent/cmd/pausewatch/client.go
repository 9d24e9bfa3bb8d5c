package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
)

// clientFlags are how `watch` and `report` reach an agent: its URL, and,
// for an agent behind a --web.config.file, the CA that signed its
// certificate, a client certificate when the agent asks for one, and basic
// auth credentials. The password is never a flag (a command line is
// readable by every user in /proc): it comes from PAUSEWATCH_PASSWORD or
// from a file. Every flag may also come from the environment,
// PAUSEWATCH_<FLAG> (PAUSEWATCH_AGENT, PAUSEWATCH_CA_FILE, ...), so that
// a shell profile sets them once.
type clientFlags struct {
	agent        string
	caFile       string
	certFile     string
	keyFile      string
	user         string
	passwordFile string
}

func (c *clientFlags) register(fs *flag.FlagSet, agentHelp string) {
	fs.StringVar(&c.agent, "agent", "http://127.0.0.1:9464", agentHelp)
	fs.StringVar(&c.caFile, "ca-file", "", "PEM `file` of the CA that signed the agent's TLS certificate (default: the system's CAs)")
	fs.StringVar(&c.certFile, "cert-file", "", "PEM client certificate `file`, for an agent whose web config asks for one (client_auth_type)")
	fs.StringVar(&c.keyFile, "key-file", "", "PEM `file` of the client certificate's key")
	fs.StringVar(&c.user, "user", "", "basic auth `user`; the password comes from PAUSEWATCH_PASSWORD or --password-file")
	fs.StringVar(&c.passwordFile, "password-file", "", "`file` whose first line is the basic auth password")
}

// fromEnv fills the flags not given on the command line from
// PAUSEWATCH_<FLAG>.
func (c *clientFlags) fromEnv(fs *flag.FlagSet) error {
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	for _, name := range []string{"agent", "ca-file", "cert-file", "key-file", "user", "password-file"} {
		if v, ok := os.LookupEnv(envName(name)); ok && !given[name] {
			if err := fs.Set(name, v); err != nil {
				return fmt.Errorf("environment %s=%q: %w", envName(name), v, err)
			}
		}
	}
	return nil
}

// parse parses the command line of a command that asks an agent (fs is
// named after it: "pausewatch report") and makes its client, whose
// timeout bounds a whole request (0: none). Without a client the command
// exits with code: 0 after --help, 2 after a usage error, which parse has
// printed; argHint says what a stray argument may have been meant as.
func (c *clientFlags) parse(fs *flag.FlagSet, args []string, usageHead, argHint string, timeout time.Duration) (client *agentClient, code int) {
	cmd := fs.Name()
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printUsage(os.Stdout, usageHead, fs)
			return nil, 0
		}
		fmt.Fprintf(os.Stderr, "%s: %v\n", cmd, flagError(cmd, err))
		return nil, 2
	}
	// A word after the flags used to be ignored: `report my-service` printed
	// every service, as if it had been understood.
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "%s: unexpected argument %q (%ssee %s --help)\n", cmd, fs.Arg(0), argHint, cmd)
		return nil, 2
	}
	if err := c.fromEnv(fs); err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", cmd, err)
		return nil, 2
	}
	client, err := c.newClient(timeout)
	if err != nil {
		fmt.Fprintf(os.Stderr, "%s: %v\n", cmd, err)
		return nil, 2
	}
	return client, 0
}

// agentClient talks to one agent.
type agentClient struct {
	base       string // the agent's URL, without a trailing slash
	http       *http.Client
	user, pass string
	hasAuth    bool
}

// newClient checks the flags and builds the client. timeout bounds a whole
// request (0: none, for the event stream).
func (c *clientFlags) newClient(timeout time.Duration) (*agentClient, error) {
	u, err := url.Parse(c.agent)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("--agent %q: want an http or https URL such as http://127.0.0.1:9464", c.agent)
	}
	if u.User != nil {
		// It would work (net/http sends it), but sits in the command
		// line and in error messages for everyone to read.
		return nil, fmt.Errorf("--agent: put no credentials in the URL; use --user and PAUSEWATCH_PASSWORD or --password-file")
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tlsSet := c.caFile != "" || c.certFile != "" || c.keyFile != ""
	if tlsSet && u.Scheme != "https" {
		return nil, fmt.Errorf("--ca-file, --cert-file and --key-file are for an https --agent, not %s", c.agent)
	}
	if u.Scheme == "https" {
		cfg := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.caFile != "" {
			pem, err := os.ReadFile(c.caFile)
			if err != nil {
				return nil, fmt.Errorf("--ca-file: %w", err)
			}
			cfg.RootCAs = x509.NewCertPool()
			if !cfg.RootCAs.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("--ca-file %s: no PEM certificate in it", c.caFile)
			}
		}
		if (c.certFile == "") != (c.keyFile == "") {
			return nil, errors.New("--cert-file and --key-file go together")
		}
		if c.certFile != "" {
			cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
			if err != nil {
				return nil, fmt.Errorf("--cert-file/--key-file: %w", err)
			}
			cfg.Certificates = []tls.Certificate{cert}
		}
		tr.TLSClientConfig = cfg
	}
	cl := &agentClient{base: strings.TrimRight(c.agent, "/"), http: &http.Client{Transport: tr, Timeout: timeout}}
	pass, havePass := os.LookupEnv("PAUSEWATCH_PASSWORD")
	if c.passwordFile != "" {
		b, err := os.ReadFile(c.passwordFile)
		if err != nil {
			return nil, fmt.Errorf("--password-file: %w", err)
		}
		pass, _, _ = strings.Cut(string(b), "\n")
		pass, havePass = strings.TrimSuffix(pass, "\r"), true
	}
	switch {
	case c.user != "":
		if !havePass {
			return nil, errors.New("--user without a password: set PAUSEWATCH_PASSWORD or --password-file")
		}
		cl.user, cl.pass, cl.hasAuth = c.user, pass, true
	case c.passwordFile != "":
		return nil, errors.New("--password-file without --user")
	}
	if cl.hasAuth && u.Scheme != "https" && !loopback(u.Hostname()) {
		// Basic auth over plain HTTP hands the password to anyone on
		// the path: only to this machine's own loopback.
		return nil, fmt.Errorf("--user with http://%s would send the password in clear: use https://, or a loopback address", u.Host)
	}
	return cl, nil
}

func loopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// get sends GET base+path with the credentials.
func (c *agentClient) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.base+path, nil)
	if err != nil {
		return nil, err
	}
	if c.hasAuth {
		req.SetBasicAuth(c.user, c.pass)
	}
	return c.http.Do(req)
}

// refusal turns an answer other than 200 into an error that says what to
// do about it.
func refusal(resp *http.Response) error {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
	msg := strings.TrimSpace(string(body))
	if resp.StatusCode == http.StatusUnauthorized {
		return fmt.Errorf("%s: the agent wants credentials (--user and PAUSEWATCH_PASSWORD or --password-file), or they are wrong", resp.Status)
	}
	return fmt.Errorf("%s: %s", resp.Status, msg)
}

// noAgent says whether err means nothing answered at all (connection
// refused, no such host), as opposed to an agent that answered and could
// not be talked to (TLS, a timeout mid-answer): only the first lets
// `watch` fall back to loading the probes itself.
func noAgent(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
