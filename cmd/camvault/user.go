package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"camvault/backoffice"
	"camvault/catalog"
)

// stdin is where `user add` and `user passwd` read a password; a
// variable so tests can feed it.
var stdin io.Reader = os.Stdin

func cmdUser(args []string, stdout, stderr io.Writer) error {
	fl, data := newFlags("user")
	role := fl.String("role", "", "add: operator, reviewer, admin or auditor")
	pwEnv := fl.String("password-env", "", "add, passwd: read the password from this environment variable instead of stdin's first line")
	by := fl.String("by", "", "who makes the change, for the audit trail (default: the OS user)")
	asJSON := fl.Bool("json", false, "list: JSON")
	pos, err := parseInterspersed(fl, args)
	if err != nil {
		return err
	}
	const use = "camvault user add NAME --role ROLE | disable NAME | passwd NAME | token NAME | revoke-token NAME | list [--json]"
	if err := subcommand(pos, use, "add", "disable", "passwd", "token", "revoke-token", "list"); err != nil {
		return err
	}
	switch {
	case pos[0] == "list" && len(pos) != 1:
		return argCount(pos, 1, "", "camvault user list [--json]")
	case pos[0] == "add" && len(pos) != 2:
		return argCount(pos, 2, "the user name", "camvault user add NAME --role ROLE")
	case pos[0] != "list" && len(pos) != 2:
		return argCount(pos, 2, "the user name", "camvault user "+pos[0]+" NAME")
	}
	cmd, name := pos[0], ""
	if len(pos) == 2 {
		name = pos[1]
		if !validName(name) {
			return usagef("user name %q: use 1-64 letters, digits, '.', '_', '-' or '@'", name)
		}
	}
	var r backoffice.Role
	switch cmd {
	case "add":
		if r, err = backoffice.ParseRole(*role); err != nil {
			return usagef("--role: %v", err)
		}
	}
	var hash string
	if cmd == "add" || cmd == "passwd" {
		pw, err := readPassword(*pwEnv)
		if err != nil {
			return err
		}
		if hash, err = backoffice.HashPassword(pw); err != nil {
			return usagef("%v: give a longer one on stdin's first line (or in the variable --password-env names)", err)
		}
	}
	n, err := openNode(data, nil, nil)
	if err != nil {
		return err
	}
	defer n.Close()
	cat, ctx, now, who := n.cat, context.Background(), time.Now(), actor(*by)
	switch cmd {
	case "add":
		tok, digest := backoffice.NewSecret()
		if err := cat.AddStaff(ctx, catalog.StaffUser{Name: name, Role: string(r), PasswordHash: hash}, digest, who, now); err != nil {
			return err
		}
		fmt.Fprintln(stdout, tok)
		fmt.Fprintf(stderr, "user %s (%s) added; the API token above is shown only once\n", name, r)
	case "passwd":
		if err := cat.SetStaffPassword(ctx, name, hash, who, now); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "password of %s changed; its sessions ended\n", name)
	case "disable":
		if err := cat.DisableStaff(ctx, name, who, now); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "user %s disabled: its sessions and tokens no longer work\n", name)
	case "token":
		tok, digest := backoffice.NewSecret()
		if err := cat.AddStaffToken(ctx, name, digest, who, now); err != nil {
			return err
		}
		fmt.Fprintln(stdout, tok)
		fmt.Fprintf(stderr, "another API token for %s; shown only once\n", name)
	case "revoke-token":
		if err := cat.RevokeStaffTokens(ctx, name, who, now); err != nil {
			return err
		}
		fmt.Fprintf(stderr, "every API token of %s revoked\n", name)
	case "list":
		users, err := cat.StaffList(ctx)
		if err != nil {
			return err
		}
		return printList(stdout, *asJSON, users, 0, "NAME\tROLE\tSTATE\tCHANGED", func(u catalog.StaffUser) string {
			state := "enabled"
			if u.Disabled {
				state = "disabled"
			}
			return fmt.Sprintf("%s\t%s\t%s\t%s", u.Name, u.Role, state, u.ChangedAt.Format(time.RFC3339))
		})
	}
	return nil
}

// readPassword takes the password from the environment variable named,
// or stdin's first line; it never prompts.
func readPassword(env string) (string, error) {
	if env != "" {
		pw, ok := os.LookupEnv(env)
		if !ok {
			return "", usagef("--password-env %s: the variable is not set", env)
		}
		return pw, nil
	}
	line, err := bufio.NewReader(stdin).ReadString('\n')
	if err != nil && !errors.Is(err, io.EOF) {
		return "", fmt.Errorf("read password from stdin: %w", err)
	}
	return strings.TrimRight(line, "\r\n"), nil
}

func validName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.ContainsRune("._-@", c)) {
			return false
		}
	}
	return true
}
