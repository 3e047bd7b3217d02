package policy

import (
	"bytes"
	"encoding/base64"
	"math/big"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// conditionsHold reports whether every operator block of a Condition holds:
// blocks AND together, keys within a block AND together, and a key's
// values OR together (for negated operators, the key must match none).
func conditionsHold(cond map[string]map[string][]string, keys Keys) bool {
	for op, block := range cond {
		for key, want := range block {
			if !conditionHolds(op, key, want, keys) {
				return false
			}
		}
	}
	return true
}

// conditionHolds evaluates one key of one operator block.
//
// A key missing from the request context makes a positive operator false
// and a negated one (StringNotEquals, NotIpAddress…) true, as AWS
// documents; the IfExists suffix makes a missing key true; Null tests
// presence itself. With the ForAnyValue:/ForAllValues: set prefixes a
// multi-valued key matches when any / every one of its values matches (and
// ForAllValues holds for an absent key); without one, any value matching is
// enough for a positive operator and none may match for a negated one.
func conditionHolds(op, key string, want []string, keys Keys) bool {
	set, base, _ := strings.Cut(op, ":")
	if base == "" {
		set, base = "", op
	}
	base, ifExists := strings.CutSuffix(base, "IfExists")
	got, present := keys.get(key)
	present = present && len(got) > 0

	if base == "Null" {
		// "Null": "true" holds when the key is absent.
		for _, w := range want {
			if b, err := strconv.ParseBool(w); err == nil && b == !present {
				return true
			}
		}
		return false
	}

	positive, negated := operatorBase(base)
	if positive == nil {
		return false // unknown operator: fail closed
	}
	one := func(v string) bool {
		for _, w := range want {
			if positive(w, v) {
				return true
			}
		}
		return false
	}
	switch set {
	case "ForAllValues":
		for _, v := range got {
			if one(v) == negated {
				return false
			}
		}
		return true
	case "ForAnyValue":
		for _, v := range got {
			if one(v) != negated {
				return true
			}
		}
		return false
	}
	if !present {
		return ifExists || negated
	}
	matched := false
	for _, v := range got {
		if one(v) {
			matched = true
			break
		}
	}
	return matched != negated
}

// operatorBase returns the positive comparison of an operator without its
// set prefix or IfExists suffix, and whether the operator negates it. Each
// comparison takes the policy's value first and the request's second.
func operatorBase(op string) (cmp func(want, got string) bool, negated bool) {
	switch op {
	case "StringEquals":
		return stringEquals, false
	case "StringNotEquals":
		return stringEquals, true
	case "StringEqualsIgnoreCase":
		return strings.EqualFold, false
	case "StringNotEqualsIgnoreCase":
		return strings.EqualFold, true
	case "StringLike", "ArnEquals", "ArnLike":
		return Match, false
	case "StringNotLike", "ArnNotEquals", "ArnNotLike":
		return Match, true
	case "NumericEquals":
		return numeric(func(c int) bool { return c == 0 }), false
	case "NumericNotEquals":
		return numeric(func(c int) bool { return c == 0 }), true
	case "NumericLessThan":
		return numeric(func(c int) bool { return c < 0 }), false
	case "NumericLessThanEquals":
		return numeric(func(c int) bool { return c <= 0 }), false
	case "NumericGreaterThan":
		return numeric(func(c int) bool { return c > 0 }), false
	case "NumericGreaterThanEquals":
		return numeric(func(c int) bool { return c >= 0 }), false
	case "DateEquals":
		return date(func(c int) bool { return c == 0 }), false
	case "DateNotEquals":
		return date(func(c int) bool { return c == 0 }), true
	case "DateLessThan":
		return date(func(c int) bool { return c < 0 }), false
	case "DateLessThanEquals":
		return date(func(c int) bool { return c <= 0 }), false
	case "DateGreaterThan":
		return date(func(c int) bool { return c > 0 }), false
	case "DateGreaterThanEquals":
		return date(func(c int) bool { return c >= 0 }), false
	case "Bool":
		return boolEquals, false
	case "BinaryEquals":
		return binaryEquals, false
	case "IpAddress":
		return ipInRange, false
	case "NotIpAddress":
		return ipInRange, true
	}
	return nil, false
}

func stringEquals(want, got string) bool { return want == got }

func boolEquals(want, got string) bool {
	w, err1 := strconv.ParseBool(strings.ToLower(want))
	g, err2 := strconv.ParseBool(strings.ToLower(got))
	return err1 == nil && err2 == nil && w == g
}

func binaryEquals(want, got string) bool {
	w, err := base64.StdEncoding.DecodeString(want)
	return err == nil && bytes.Equal(w, []byte(got))
}

// numeric compares the request's number with the policy's: the result of
// cmp(got - want) sign. A value that is not a number matches nothing.
func numeric(ok func(int) bool) func(want, got string) bool {
	return func(want, got string) bool {
		w, okW := new(big.Float).SetString(want)
		g, okG := new(big.Float).SetString(got)
		return okW && okG && ok(g.Cmp(w))
	}
}

// date compares the request's time with the policy's; either may be
// RFC 3339 (or a date alone) or epoch seconds.
func date(ok func(int) bool) func(want, got string) bool {
	return func(want, got string) bool {
		w, okW := parseTime(want)
		g, okG := parseTime(got)
		return okW && okG && ok(g.Compare(w))
	}
}

func parseTime(s string) (time.Time, bool) {
	for _, layout := range []string{time.RFC3339Nano, "2006-01-02T15:04Z07:00", "2006-01-02"} {
		if t, err := time.Parse(layout, s); err == nil {
			return t, true
		}
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return time.Unix(n, 0), true
	}
	return time.Time{}, false
}

// ipInRange reports whether the request's address lies in the policy's
// CIDR block (or equals its single address).
func ipInRange(want, got string) bool {
	addr, err := netip.ParseAddr(got)
	if err != nil {
		return false
	}
	addr = addr.Unmap()
	if pfx, err := netip.ParsePrefix(want); err == nil {
		return pfx.Masked().Contains(addr)
	}
	if a, err := netip.ParseAddr(want); err == nil {
		return a.Unmap() == addr
	}
	return false
}
