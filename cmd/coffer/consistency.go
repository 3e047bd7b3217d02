package main

import (
	"context"
	"fmt"
	"strconv"
	"strings"

	"google.golang.org/grpc/metadata"
)

// The read-consistency metadata of Coffer's API, as server/consistency.go
// defines them. They are repeated here rather than imported so that the
// client does not link the server, its Raft node and its storage; a test
// checks that the two agree.
const (
	consistencyHeader = "x-coffer-consistency" // server.ConsistencyHeader
	minIndexHeader    = "x-coffer-min-index"   // server.MinIndexHeader
	indexHeader       = "x-coffer-index"       // server.IndexHeader
)

// Values of --consistency.
const (
	consistencyLinearizable = "linearizable"
	consistencyStale        = "stale"
)

// indexKind says what the log index on a command's answers means, and so
// which of --show-index, --consistency and --min-index the command takes.
type indexKind int

const (
	noIndex    indexKind = iota // the answer reflects no log index
	writeIndex                  // the index the write was committed at
	readIndex                   // the index the read was served at
)

// readCommands lists the commands that take the read flags, for the error
// given when another command is handed one.
const readCommands = "secrets get, describe, list, versions and policy get"

// checkReadFlags refuses --consistency and --min-index on a command that
// does not read: silently ignoring --min-index on a write would let a script
// believe it had waited for something. The environment's COFFER_CONSISTENCY
// is a default for reads and is not refused.
func (l *leaf) checkReadFlags() error {
	if l.cmd.index == readIndex || len(l.inv.opts.readFlagsGiven) == 0 {
		return nil
	}
	return l.usageErrorf("%s applies only to reads (%s)", l.inv.opts.readFlagsGiven[0], readCommands)
}

// withReadConsistency adds the read flags to ctx's outgoing metadata when the
// command reads and they ask for something.
func (l *leaf) withReadConsistency(ctx context.Context) context.Context {
	if l.cmd.index != readIndex {
		return ctx
	}
	o := l.inv.opts
	if o.consistency != "" {
		ctx = metadata.AppendToOutgoingContext(ctx, consistencyHeader, o.consistency)
	}
	if o.minIndex > 0 {
		ctx = metadata.AppendToOutgoingContext(ctx, minIndexHeader, strconv.FormatUint(o.minIndex, 10))
	}
	return ctx
}

// noteIndex records the index in a response's header. Of several answers
// (the pages of a list) the highest counts: a later read with that
// --min-index sees at least everything any page showed.
func (l *leaf) noteIndex(header metadata.MD) {
	v := header.Get(indexHeader)
	if len(v) == 0 {
		return
	}
	idx, err := strconv.ParseUint(strings.TrimSpace(v[0]), 10, 64)
	if err != nil {
		return
	}
	l.indexSeen = true
	l.index = max(l.index, idx)
}

// reportIndex prints "index N" on stderr for --show-index, so that
// idx=$(coffer ... --show-index 2>&1 >/dev/null | awk '{print $2}') works. A
// server that sent no index gets "index unknown", which a later --min-index
// refuses rather than reading without waiting.
func (l *leaf) reportIndex() error {
	if l.showIndex == nil || !*l.showIndex {
		return nil
	}
	if !l.indexSeen {
		_, err := fmt.Fprintln(l.inv.stderr, "index unknown")
		return err
	}
	_, err := fmt.Fprintf(l.inv.stderr, "index %d\n", l.index)
	return err
}
