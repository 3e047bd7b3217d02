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
		fmt.Fprintf(l.inv.stdout, "region %s, leader %s, answered by %s\n", orNone(resp.GetRegion()), orNone(resp.GetLeaderId()), orNone(resp.GetAnsweredBy()))
	}
	return l.print(resp, func(t *table) {
		t.row("NODE", "STATE", "VOTER", "LEADER", "TERM", "COMMIT", "APPLIED", "LAST LOG", "HEALTH", "API ADDRESS", "RAFT ADDRESS")
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
			t.row(s.GetNodeId(), s.GetState(), formatBool(s.GetVoter()), leader,
				index(s.GetTerm()), index(s.GetCommitIndex()), index(s.GetAppliedIndex()), index(s.GetLastLogIndex()),
				s.GetHealth(), s.GetApiAddress(), s.GetRaftAddress())
		}
	})
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
