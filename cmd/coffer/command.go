package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"

	"google.golang.org/grpc"
	"google.golang.org/grpc/metadata"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// command is one node of the command tree: a group such as "secrets", whose
// subcommand is the next argument, or a leaf that makes one RPC.
type command struct {
	name     string
	synopsis string // what follows the command's path in its usage line
	summary  string // one line in the parent's command list
	detail   string // printed by -h under the usage line
	subs     []*command
	run      func(l *leaf, args []string) error
	index    indexKind // what x-coffer-index on the answer means, if anything
	parent   *command
}

func group(name, summary, detail string, subs ...*command) *command {
	c := &command{name: name, summary: summary, detail: detail, subs: subs}
	for _, s := range subs {
		s.parent = c
	}
	return c
}

// path is the command line that selects c, such as "coffer secrets get".
func (c *command) path() string {
	if c.parent == nil {
		return c.name
	}
	return c.parent.path() + " " + c.name
}

func (c *command) find(name string) *command {
	for _, s := range c.subs {
		if s.name == name {
			return s
		}
	}
	return nil
}

// execute runs c with the arguments that follow its name.
func (c *command) execute(inv *invocation, args []string) error {
	if c.run != nil {
		l := &leaf{inv: inv, cmd: c, fs: newFlagSet(c.path())}
		inv.opts.register(l.fs)
		if c.index != noIndex {
			l.showIndex = l.fs.Bool("show-index", false, "print \"index N\" on stderr: the log index the answer reflects")
		}
		if err := c.run(l, args); err != nil {
			return err
		}
		return l.reportIndex()
	}
	fs := newFlagSet(c.path())
	inv.opts.register(fs)
	usage := c.groupUsage
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			usage(inv.stdout)
			return errHelpShown
		}
		return &usageError{msg: err.Error(), usage: usage}
	}
	rest := fs.Args()
	if len(rest) == 0 {
		return &usageError{msg: "missing command", usage: usage}
	}
	if rest[0] == "help" {
		return c.help(inv, rest[1:])
	}
	sub := c.find(rest[0])
	if sub == nil {
		return &usageError{msg: fmt.Sprintf("unknown command %q", rest[0]), usage: usage}
	}
	return sub.execute(inv, rest[1:])
}

// help prints the usage of c or, given names, of the subcommand they select.
func (c *command) help(inv *invocation, names []string) error {
	if len(names) == 0 {
		c.groupUsage(inv.stdout)
		return errHelpShown
	}
	sub := c.find(names[0])
	if sub == nil {
		return &usageError{msg: fmt.Sprintf("unknown command %q", names[0]), usage: c.groupUsage}
	}
	if sub.run != nil {
		return sub.execute(inv, []string{"-h"})
	}
	return sub.help(inv, names[1:])
}

func (c *command) groupUsage(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s [global flags] <command> [arguments] [flags]\n\n", c.path())
	if c.detail != "" {
		fmt.Fprintf(w, "%s\n\n", c.detail)
	}
	fmt.Fprintln(w, "Commands:")
	tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
	for _, s := range c.subs {
		fmt.Fprintf(tw, "  %s\t%s\n", s.name, s.summary)
	}
	fmt.Fprintf(tw, "  help\tShow help for a command\n")
	tw.Flush()
	fmt.Fprintf(w, "\nGlobal flags, accepted before or after any command:\n%s", globalFlagHelp)
	if c.parent == nil {
		fmt.Fprintf(w, "\nExit status:\n%s", exitCodeHelp)
	}
	fmt.Fprintf(w, "\nRun \"%s <command> -h\" for a command's arguments and flags.\n", c.path())
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors and usage are printed by report and usage
	return fs
}

// invocation is one run of the program: its streams, global options, and the
// connection, opened on the first RPC.
type invocation struct {
	ctx    context.Context
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	opts   options
	conn   *grpc.ClientConn
}

func (inv *invocation) close() {
	if inv.conn != nil {
		inv.conn.Close()
	}
}

// connect returns the connection, dialing it on first use.
func (inv *invocation) connect() (*grpc.ClientConn, error) {
	if inv.conn == nil {
		conn, err := inv.opts.dial()
		if err != nil {
			return nil, err
		}
		inv.conn = conn
	}
	return inv.conn, nil
}

// leaf is a leaf command being run: its flags, and after parse, which of them
// the command line gave.
type leaf struct {
	inv   *invocation
	cmd   *command
	fs    *flag.FlagSet
	given map[string]bool

	showIndex *bool  // --show-index, on commands whose answers carry an index
	index     uint64 // the highest x-coffer-index answered so far
	indexSeen bool   // whether any answer carried one
}

// parse parses args, which may mix flags and positional arguments, and checks
// the positional ones against names: "ID" is required, "[ID]" optional, and a
// last name ending in "..." takes one or more.
func (l *leaf) parse(args []string, names ...string) ([]string, error) {
	pos, err := parseInterspersed(l.fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			l.usage(l.inv.stdout)
			return nil, errHelpShown
		}
		return nil, l.usageErrorf("%v", err)
	}
	l.given = map[string]bool{}
	l.fs.Visit(func(f *flag.Flag) { l.given[f.Name] = true })
	if err := l.inv.opts.validate(); err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	if err := l.checkReadFlags(); err != nil {
		return nil, err
	}
	variadic := len(names) > 0 && strings.HasSuffix(names[len(names)-1], "...")
	for i, name := range names {
		if strings.HasPrefix(name, "[") {
			continue
		}
		name = strings.TrimSuffix(name, "...")
		if i >= len(pos) {
			return nil, l.usageErrorf("missing %s", name)
		}
		if pos[i] == "" {
			return nil, l.usageErrorf("%s must not be empty", name)
		}
	}
	if !variadic && len(pos) > len(names) {
		return nil, l.usageErrorf("unexpected argument %q", pos[len(names)])
	}
	return pos, nil
}

// parseInterspersed parses flags wherever they appear in args, as users expect
// from "coffer secrets get ID --value-only", and returns the other arguments.
// After "--" everything is positional.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var positional []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if consumed := len(args) - len(rest); consumed > 0 && args[consumed-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

func (l *leaf) usageErrorf(format string, a ...any) error {
	return &usageError{msg: fmt.Sprintf(format, a...), usage: l.usage}
}

// usage prints the command's synopsis, description and own flags; the global
// flags are only named, since "coffer help" documents them.
func (l *leaf) usage(w io.Writer) {
	fmt.Fprintf(w, "Usage: %s %s\n", l.cmd.path(), l.cmd.synopsis)
	if l.cmd.detail != "" {
		fmt.Fprintf(w, "\n%s\n", l.cmd.detail)
	}
	var own []*flag.Flag
	l.fs.VisitAll(func(f *flag.Flag) {
		if !globalFlagNames[f.Name] {
			own = append(own, f)
		}
	})
	if len(own) > 0 {
		fmt.Fprintln(w, "\nFlags:")
		tw := tabwriter.NewWriter(w, 0, 8, 2, ' ', 0)
		for _, f := range own {
			arg, text := flag.UnquoteUsage(f)
			if arg == "value" { // a flag.Value without a `NAME` in its usage
				arg = "VALUE"
			}
			name := "--" + f.Name
			if len(f.Name) == 1 {
				name = "-" + f.Name
			}
			if arg != "" {
				name += " " + arg
			}
			fmt.Fprintf(tw, "  %s\t%s\n", name, text)
		}
		tw.Flush()
	}
	globals := "--endpoint, -o/--output, --timeout, --tls, --ca-file"
	if l.cmd.index == readIndex {
		globals += ", --consistency, --min-index"
	}
	fmt.Fprintf(w, "\nGlobal flags: %s (see \"coffer help\").\n", globals)
}

// client and adminClient name the generated client interfaces, whose method
// expressions (client.GetSecretValue, adminClient.ClusterStatus) are what
// call and callAdmin take.
type (
	client      = cofferv1.SecretsManagerServiceClient
	adminClient = cofferv1.AdminServiceClient
)

// call makes one Secrets Manager RPC; see invoke.
func call[Req, Resp any](l *leaf, rpc func(client, context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	return invoke(l, cofferv1.NewSecretsManagerServiceClient, rpc, req)
}

// callAdmin makes one unary AdminService RPC; see invoke.
func callAdmin[Req, Resp any](l *leaf, rpc func(adminClient, context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	return invoke(l, cofferv1.NewAdminServiceClient, rpc, req)
}

// invoke makes one unary RPC with the per-RPC deadline, connecting first if
// needed. A read sends the read flags as metadata, and the log index in the
// answer's header is noted for --show-index.
func invoke[C, Req, Resp any](l *leaf, newClient func(grpc.ClientConnInterface) C, rpc func(C, context.Context, Req, ...grpc.CallOption) (Resp, error), req Req) (Resp, error) {
	conn, err := l.inv.connect()
	if err != nil {
		var zero Resp
		return zero, err
	}
	ctx, cancel := context.WithTimeout(l.inv.ctx, l.inv.opts.timeout)
	defer cancel()
	var header metadata.MD
	resp, err := rpc(newClient(conn), l.withReadConsistency(ctx), req, grpc.Header(&header))
	if err == nil {
		l.noteIndex(header)
	}
	return resp, err
}

// followPages calls page with each next token, starting from "", until the
// server returns none. A server that hands back a token it already gave would
// otherwise keep the client looping forever.
func followPages(page func(token string) (next string, err error)) error {
	seen := map[string]bool{}
	token := ""
	for {
		next, err := page(token)
		if err != nil {
			return err
		}
		if next == "" {
			return nil
		}
		if seen[next] {
			return fmt.Errorf("server repeated next_token %q; stopping", next)
		}
		seen[next] = true
		token = next
	}
}
