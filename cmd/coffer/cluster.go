package main

import (
	"fmt"
	"strconv"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

func runClusterStatus(l *leaf, args []string) error {
	if _, err := l.parse(args); err != nil {
		return err
	}
	resp, err := callAdmin(l, adminClient.ClusterStatus, &cofferv1.ClusterStatusRequest{})
	if err != nil {
		return err
	}
	if l.inv.opts.output == outputTable {
		fmt.Fprintf(l.inv.stdout, "region %s, cluster id %s, leader %s, answered by %s\n", orNone(resp.GetRegion()), orNone(resp.GetClusterId()),
			orNone(resp.GetLeaderId()), orNone(resp.GetAnsweredBy()))
	}
	return l.print(resp, func(t *table) {
		t.row("NODE", "STATE", "VOTER", "LEADER", "TERM", "COMMIT", "APPLIED", "LAST LOG", "HEALTH", "DIVERGED", "API ADDRESS", "RAFT ADDRESS")
		for _, s := range resp.GetServers() {
			// An unreachable server's numbers are unknown, not zero.
			known := s.GetHealth() != "unreachable"
			index := func(v uint64) string {
				if !known {
					return ""
				}
				return strconv.FormatUint(v, 10)
			}
			leader := ""
			if s.GetLeader() {
				leader = "*"
			}
			diverged := ""
			if known {
				diverged = formatBool(s.GetDiverged())
			}
			t.row(s.GetNodeId(), s.GetState(), formatBool(s.GetVoter()), leader,
				index(s.GetTerm()), index(s.GetCommitIndex()), index(s.GetAppliedIndex()), index(s.GetLastLogIndex()),
				s.GetHealth(), diverged, s.GetApiAddress(), s.GetRaftAddress())
		}
	})
}

// runClusterCheck runs a consistency check through the leader and prints
// each server's hash and verdict. It exits 1 unless every server matched.
func runClusterCheck(l *leaf, args []string) error {
	if _, err := l.parse(args); err != nil {
		return err
	}
	resp, err := callAdmin(l, adminClient.CheckConsistency, &cofferv1.CheckConsistencyRequest{})
	if err != nil {
		return err
	}
	if l.inv.opts.output == outputTable {
		fmt.Fprintf(l.inv.stdout, "checked at index %d\n", resp.GetIndex())
	}
	err = l.print(resp, func(t *table) {
		t.row("NODE", "INDEX", "HASH", "VERDICT", "DETAIL")
		for _, s := range resp.GetServers() {
			index := ""
			if s.GetIndex() != 0 {
				index = strconv.FormatUint(s.GetIndex(), 10)
			}
			hash := s.GetHash()
			if len(hash) > 16 {
				hash = hash[:16] // enough to tell hashes apart; -o json has them whole
			}
			t.row(s.GetNodeId(), index, hash, s.GetVerdict(), s.GetDetail())
		}
	})
	if err != nil {
		return err
	}
	if !resp.GetConsistent() {
		return &exitError{code: exitFailure, msg: "the servers' states do not all hash the same (see VERDICT)"}
	}
	return nil
}

func runClusterMembers(l *leaf, args []string) error {
	if _, err := l.parse(args); err != nil {
		return err
	}
	resp, err := callAdmin(l, adminClient.ListMembers, &cofferv1.ListMembersRequest{})
	if err != nil {
		return err
	}
	return l.print(resp, func(t *table) {
		t.row("NODE", "STATUS", "REGION", "GOSSIP", "RAFT", "API")
		for _, m := range resp.GetMembers() {
			t.row(m.GetNodeId(), m.GetStatus(), m.GetRegion(), m.GetGossipAddress(), m.GetRaftAddress(), m.GetApiAddress())
		}
	})
}

func runRemovePeer(l *leaf, args []string) error {
	pos, err := l.parse(args, "NODE_ID")
	if err != nil {
		return err
	}
	resp, err := callAdmin(l, adminClient.RemovePeer, &cofferv1.RemovePeerRequest{NodeId: pos[0]})
	if err != nil {
		return err
	}
	return l.printLine(resp, "removed "+cell(pos[0]))
}

func runTransferLeader(l *leaf, args []string) error {
	pos, err := l.parse(args, "[NODE_ID]")
	if err != nil {
		return err
	}
	req := &cofferv1.TransferLeadershipRequest{}
	if len(pos) > 0 {
		if pos[0] == "" {
			return l.usageErrorf("NODE_ID must not be empty; leave it out to let Raft choose")
		}
		req.NodeId = pos[0]
	}
	resp, err := callAdmin(l, adminClient.TransferLeadership, req)
	if err != nil {
		return err
	}
	return l.printLine(resp, "leader is now "+orNone(resp.GetLeaderId()))
}
