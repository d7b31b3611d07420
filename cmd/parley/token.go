package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/parley-chat/parley/pkg/auth"
	"github.com/parley-chat/parley/pkg/protocol"
)

// tokenConfig is what `parley token` runs with: its flags (defaults as
// given, each also settable as PARLEY_<FLAG>) and the signer parseToken
// makes of them.
type tokenConfig struct {
	user       string        // --user: the token's sub; required
	ttl        time.Duration // --ttl: how long the token is valid; default 1h
	name       string        // --name: display name claim; default "": none
	rooms      string        // --rooms: comma-separated room patterns (* and ?); default "": every room
	kid        string        // --kid: key id in the header, for a JWKS; default "": none
	jwtSecret  string        // --jwt-secret: HS256 secret; default ""
	privateKey string        // --jwt-private-key: PEM RSA or EC P-256 private key file (RS256/ES256); default ""

	// derived by parseToken
	signer   *auth.Signer
	patterns []string
}

// parseToken parses and checks token's flags (and PARLEY_* variables),
// and loads the signing key. It reports ok false with the exit code when
// there is nothing to run: --help (0) or bad input, said in one line on
// stderr (2).
func parseToken(args []string, stderr io.Writer) (cfg tokenConfig, code int, ok bool) {
	fs := flag.NewFlagSet("parley token", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&cfg.user, "user", "", "the user the token is for (its sub); required")
	fs.DurationVar(&cfg.ttl, "ttl", time.Hour, "how long the token is valid")
	fs.StringVar(&cfg.name, "name", "", "display name (the name claim); empty: none")
	fs.StringVar(&cfg.rooms, "rooms", "", "comma-separated room patterns the token allows (the rooms claim; * matches any run of characters, ? one), e.g. 'general,team-*'; empty: every room")
	fs.StringVar(&cfg.kid, "kid", "", "key id put in the token's header, naming the JWKS key that verifies it; empty: none")
	fs.StringVar(&cfg.jwtSecret, "jwt-secret", "", "HS256 secret to sign with (the gateway's --jwt-secret)")
	fs.StringVar(&cfg.privateKey, "jwt-private-key", "", "PEM private key file to sign with: RSA (RS256) or EC P-256 (ES256)")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: parley token --user USER [flags]\n\nPrints a client token for USER, signed with --jwt-secret or --jwt-private-key (exactly one). Each flag may also be set as PARLEY_<FLAG> (e.g. PARLEY_JWT_SECRET).\n\nFlags:\n")
		fs.PrintDefaults()
	}
	fail := func(format string, a ...any) (tokenConfig, int, bool) {
		fmt.Fprintf(stderr, "parley token: "+format+"\n", a...)
		return cfg, 2, false
	}
	if err := applyEnv(fs, args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return cfg, 0, false
		}
		return fail("%v", err)
	}
	if fs.NArg() > 0 {
		return fail("unexpected argument %q", fs.Arg(0))
	}
	switch {
	case cfg.user == "":
		return fail("--user is required")
	case !protocol.ValidUser(cfg.user):
		return fail("--user %q is not a valid user name: 1-64 of A-Z a-z 0-9 . _ : -, starting with a letter or digit", cfg.user)
	case cfg.ttl <= 0:
		return fail("--ttl must be positive")
	case (cfg.jwtSecret == "") == (cfg.privateKey == ""):
		return fail("sign with exactly one of --jwt-secret (PARLEY_JWT_SECRET) and --jwt-private-key")
	}
	if cfg.rooms != "" {
		for _, p := range strings.Split(cfg.rooms, ",") {
			p = strings.TrimSpace(p)
			if !validPattern(p) {
				return fail("--rooms: %q is not a room pattern: 1-64 of A-Z a-z 0-9 . _ : - * ?", p)
			}
			cfg.patterns = append(cfg.patterns, p)
		}
	}
	var err error
	if cfg.jwtSecret != "" {
		cfg.signer, err = auth.NewHMACSigner([]byte(cfg.jwtSecret))
	} else {
		cfg.signer, err = auth.LoadKeySigner(cfg.privateKey)
	}
	if err != nil {
		return fail("%v", err)
	}
	cfg.signer.Kid = cfg.kid
	return cfg, 0, true
}

// validPattern reports whether p can be a rooms pattern: a room name's
// alphabet plus the wildcards.
func validPattern(p string) bool {
	if p == "" || len(p) > 64 {
		return false
	}
	for _, r := range p {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || strings.ContainsRune("._:-*?", r)) {
			return false
		}
	}
	return true
}

// runToken prints the token cfg describes on stdout.
func runToken(_ context.Context, cfg tokenConfig, stdout, stderr io.Writer) int {
	tok, err := cfg.signer.Sign(auth.Claims{User: cfg.user, Name: cfg.name, Rooms: cfg.patterns, Expires: time.Now().Add(cfg.ttl)})
	if err != nil {
		fmt.Fprintf(stderr, "parley token: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, tok)
	return 0
}
