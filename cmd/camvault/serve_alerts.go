package main

import (
	"flag"
	"strings"

	"camvault/backoffice"
)

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

// alertFlags are serve's alert-delivery flags.
type alertFlags struct {
	tokens, secret *string
	webhooks       listFlag
}

func addAlertFlags(fl *flag.FlagSet) *alertFlags {
	a := &alertFlags{
		tokens: fl.String("api-tokens", "", "file of API tokens for /api/v1 (lines: NAME ROLE TOKEN; mode 0600)"),
		secret: fl.String("webhook-secret-file", "", "file holding the secret that signs webhooks (mode 0600, at least 16 characters)"),
	}
	fl.Var(&a.webhooks, "webhook", "POST every alert to this URL, signed (repeatable)")
	return a
}

// config loads the token and secret files named by the flags.
func (a *alertFlags) config() (backoffice.Config, error) {
	var cfg backoffice.Config
	if *a.tokens != "" {
		t, err := backoffice.LoadTokens(*a.tokens)
		if err != nil {
			return cfg, err
		}
		cfg.Auth = t
	}
	if len(a.webhooks) > 0 && *a.secret == "" {
		return cfg, usagef("--webhook needs --webhook-secret-file")
	}
	if *a.secret != "" {
		s, err := backoffice.LoadSecret(*a.secret)
		if err != nil {
			return cfg, err
		}
		cfg.WebhookSecret = s
	}
	cfg.Webhooks = a.webhooks
	return cfg, nil
}
