package main

import (
	"bufio"
	"fmt"
	"os"
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
	if !*reset {
		if req.Share, err = shareArg(l, pos); err != nil {
			return err
		}
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

// shareArg is the key share given as the one argument, or else the first
// line of standard input (which keeps it out of the shell history).
func shareArg(l *leaf, pos []string) (string, error) {
	if len(pos) == 1 {
		return pos[0], nil
	}
	line, err := bufio.NewReader(l.inv.stdin).ReadString('\n')
	if err != nil && line == "" {
		return "", l.usageErrorf("no share given: pass it as an argument or on standard input")
	}
	return strings.TrimSpace(line), nil
}

// runOperatorRekey runs one step of a rekey of a running node's Shamir
// seal: --init starts it; each holder checks it (--status) and enters a
// current share with the nonce and --yes; the last one gets the new
// shares; a threshold of the new shares entered back with --verify makes
// the node write the new seal.json. With --key-label it re-wraps a pkcs11
// seal's root key under another HSM key.
func runOperatorRekey(l *leaf, args []string) error {
	start := l.fs.Bool("init", false, "start a rekey with --shares and --threshold")
	shares := l.fs.Int("shares", 5, "with --init: how many new shares to make")
	threshold := l.fs.Int("threshold", 3, "with --init: how many new shares unseal")
	nonce := l.fs.String("nonce", "", "the rekey's nonce, as --init (or, for --verify, the new shares' answer) printed it")
	cancel := l.fs.Bool("cancel", false, "cancel the rekey in progress (with its --nonce) and discard its shares")
	verify := l.fs.Bool("verify", false, "enter one of the NEW shares back: the node writes the new seal.json once a threshold of them combine")
	status := l.fs.Bool("status", false, "show the rekey in progress: who started it, the new split, where the new shares go")
	yes := l.fs.Bool("yes", false, "enter the share for the rekey --status shows (without it, the rekey is shown and nothing is sent)")
	keyLabel := l.fs.String("key-label", "", "pkcs11 seal: re-wrap the root key under the token's key with this label (made if absent)")
	recipients := l.fs.String("age-recipients", "", "with --init: a file of age public keys, one per new share in order; each new share is returned encrypted to its key")
	pos, err := l.parse(args, "[SHARE]")
	if err != nil {
		return err
	}
	if *status {
		st, err := invoke(l, cofferv1.NewSealServiceClient, cofferv1.SealServiceClient.SealStatus, &cofferv1.SealStatusRequest{})
		if err != nil {
			return err
		}
		return l.printLine(st, rekeyPlan(st.GetRekey()))
	}
	req := &cofferv1.RekeyRequest{Init: *start, Cancel: *cancel, Nonce: *nonce, Verify: *verify}
	switch {
	case *keyLabel != "" && (*start || *cancel || *verify || *nonce != ""):
		return l.usageErrorf("--key-label (the pkcs11 seal) goes alone")
	case *keyLabel != "":
		req.NewKeyLabel = *keyLabel
	case *start && (*cancel || *verify):
		return l.usageErrorf("--init goes without --cancel and --verify")
	case *start:
		req.NewShares, req.NewThreshold = int32(*shares), int32(*threshold)
		if *recipients != "" {
			if req.AgeRecipients, err = readRecipients(*recipients); err != nil {
				return err
			}
		}
	case *nonce == "" && *cancel:
		return l.usageErrorf("give --nonce (coffer operator rekey --status shows it) to cancel the rekey")
	case *cancel:
	case *nonce == "":
		return l.usageErrorf("give --nonce (as --init printed it) with a share")
	default:
		// A holder consents to one rekey: show it and send only with --yes.
		st, err := invoke(l, cofferv1.NewSealServiceClient, cofferv1.SealServiceClient.SealStatus, &cofferv1.SealStatusRequest{})
		if err != nil {
			return err
		}
		fmt.Fprintln(l.inv.stderr, rekeyPlan(st.GetRekey()))
		if !*yes {
			return &exitError{code: exitRejected, msg: "nothing sent: check the rekey above, then enter your share again with --yes"}
		}
		if req.Share, err = shareArg(l, pos); err != nil {
			return err
		}
	}
	resp, err := invoke(l, cofferv1.NewSealServiceClient, cofferv1.SealServiceClient.Rekey, req)
	if err != nil {
		return err
	}
	switch {
	case *keyLabel != "":
		return l.printLine(resp, fmt.Sprintf("re-wrapped the root key under HSM key %q; the node wrote the new seal.json: copy it to every other node of the region", resp.GetKeyLabel()))
	case *cancel:
		return l.printLine(resp, "rekey cancelled")
	case resp.GetComplete():
		return l.printLine(resp, fmt.Sprintf("rekeyed: the new shares were verified and the node wrote the new seal.json (%d shares, %d of which unseal): copy it to every other node of the region; the old shares no longer unseal with it",
			resp.GetNewShares(), resp.GetNewThreshold()))
	case len(resp.GetNewKeyShares()) > 0:
		return l.printLine(resp, newSharesText(resp))
	case *start:
		return l.printLine(resp, fmt.Sprintf("rekey started (%d new shares, threshold %d); nonce: %s\neach holder checks it (coffer operator rekey --status), then enters a current share: coffer operator rekey --nonce %s --yes (%d needed)",
			resp.GetNewShares(), resp.GetNewThreshold(), resp.GetNonce(), resp.GetNonce(), resp.GetThreshold()))
	case *verify:
		return l.printLine(resp, fmt.Sprintf("rekey: %d of %d new shares entered back", resp.GetProgress(), resp.GetNewThreshold()))
	default:
		return l.printLine(resp, fmt.Sprintf("rekey: %d of %d current shares entered", resp.GetProgress(), resp.GetThreshold()))
	}
}

// rekeyPlan describes the rekey in progress for a holder about to consent.
func rekeyPlan(rk *cofferv1.RekeyInProgress) string {
	if rk == nil {
		return "no rekey is in progress"
	}
	var b strings.Builder
	fmt.Fprintf(&b, "rekey %s, started by %s: %d new shares, %d of which will unseal\n", rk.GetNonce(), rk.GetStartedBy(), rk.GetNewShares(), rk.GetNewThreshold())
	if r := rk.GetAgeRecipients(); len(r) > 0 {
		b.WriteString("the new shares will be encrypted to these age keys, in order:")
		for i, k := range r {
			fmt.Fprintf(&b, "\n  share %d: %s", i+1, k)
		}
	} else {
		b.WriteString("the new shares will be returned IN CLEAR to whoever enters the last current share")
	}
	if rk.GetVerifying() {
		fmt.Fprintf(&b, "\nthe new shares were handed out: %d of %d entered back (--verify)", rk.GetProgress(), rk.GetThreshold())
	} else {
		fmt.Fprintf(&b, "\n%d of %d current shares entered", rk.GetProgress(), rk.GetThreshold())
	}
	return b.String()
}

// newSharesText is the answer that hands out the new key shares, one a
// line, as cofferd operator init prints them.
func newSharesText(resp *cofferv1.RekeyResponse) string {
	var b strings.Builder
	fmt.Fprintf(&b, "new shares: %d, %d of which unseal. Nothing changed yet: the current shares and seal.json stay in force until %d of these are entered back with coffer operator rekey --verify --nonce %s --yes SHARE; then the node writes the new seal.json.\n",
		resp.GetNewShares(), resp.GetNewThreshold(), resp.GetNewThreshold(), resp.GetNonce())
	if len(resp.GetAgeRecipients()) > 0 {
		b.WriteString("Each share is encrypted to its age key; its holder enters it with: echo SHARE | base64 -d | age -d -i KEY | coffer operator unseal\n")
	}
	b.WriteString("Give each share to a different person; they are printed once and stored nowhere:")
	for i, s := range resp.GetNewKeyShares() {
		if r := resp.GetAgeRecipients(); i < len(r) {
			fmt.Fprintf(&b, "\nshare %d (age, to %s): %s", i+1, r[i], s)
			continue
		}
		fmt.Fprintf(&b, "\nshare %d: %s", i+1, s)
	}
	return b.String()
}

// readRecipients reads an age recipients file: one public key a line,
// blank lines and # comments skipped (age's -R format).
func readRecipients(path string) ([]string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []string
	for line := range strings.SplitSeq(string(b), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out, nil
}
