package main

import (
	"bufio"
	"fmt"
	"strings"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// runOperatorUnseal enters one key share on a sealed node.
func runOperatorUnseal(l *leaf, args []string) error {
	reset := l.fs.Bool("reset", false, "discard the shares entered so far")
	pos, err := l.parse(args, "[SHARE]")
	if err != nil {
		return err
	}
	req := &cofferv1.UnsealRequest{DiscardShares: *reset}
	switch {
	case *reset:
	case len(pos) == 1:
		req.Share = pos[0]
	default:
		line, err := bufio.NewReader(l.inv.stdin).ReadString('\n')
		if err != nil && line == "" {
			return l.usageErrorf("no share given: pass it as an argument or on standard input")
		}
		req.Share = strings.TrimSpace(line)
	}
	resp, err := invoke(l, cofferv1.NewSealServiceClient, cofferv1.SealServiceClient.Unseal, req)
	if err != nil {
		return err
	}
	state := fmt.Sprintf("sealed: %d of %d shares entered", resp.GetProgress(), resp.GetThreshold())
	if !resp.GetSealed() {
		state = "unsealed: the node is starting"
	}
	return l.printLine(resp, state)
}

// runOperatorSealStatus shows a node's seal state.
func runOperatorSealStatus(l *leaf, args []string) error {
	if _, err := l.parse(args); err != nil {
		return err
	}
	resp, err := invoke(l, cofferv1.NewSealServiceClient, cofferv1.SealServiceClient.SealStatus, &cofferv1.SealStatusRequest{})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		t.field("Seal", resp.GetSealType())
		t.field("Sealed", formatBool(resp.GetSealed()))
		t.field("Progress", fmt.Sprintf("%d/%d", resp.GetProgress(), resp.GetThreshold()))
		t.field("Shares", fmt.Sprint(resp.GetShares()))
	})
}
