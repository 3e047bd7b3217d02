package policy

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"
)

// parser collects every syntax problem in a document rather than stopping
// at the first, so that Validate can report them all; Parse reports the
// first. Each problem is a sentence that starts with where it is.
type parser struct {
	problems []string
	// resource is set when parsing a resource policy, which must name a
	// Principal or NotPrincipal in every statement.
	resource bool
}

func (p *parser) addf(format string, args ...any) {
	p.problems = append(p.problems, fmt.Sprintf(format, args...))
}

// parse returns the document and its syntax problems. The document is only
// meaningful when there are none. With resource set it applies the rules of
// resource policies as well (every statement names a Principal or
// NotPrincipal).
func parse(doc string, resource bool) (*Document, []string) {
	if n := utf8.RuneCountInString(doc); n > MaxDocumentLength {
		return nil, []string{fmt.Sprintf("the document is %d characters long; the maximum is %d", n, MaxDocumentLength)}
	}
	dec := json.NewDecoder(strings.NewReader(doc))
	dec.UseNumber() // numbers in conditions keep their exact text
	var root any
	if err := dec.Decode(&root); err != nil {
		return nil, []string{describeJSONError(err)}
	}
	if off := dec.InputOffset(); strings.TrimLeft(doc[off:], " \t\r\n") != "" {
		return nil, []string{fmt.Sprintf("the document has data after the JSON value, at byte offset %d", off)}
	}
	obj, ok := root.(map[string]any)
	if !ok {
		return nil, []string{fmt.Sprintf("the document must be a JSON object, got %s", kind(root))}
	}
	p := parser{resource: resource}
	d := p.document(obj)
	return d, p.problems
}

func describeJSONError(err error) string {
	var syntax *json.SyntaxError
	switch {
	case errors.Is(err, io.EOF):
		return "the document is empty"
	case errors.Is(err, io.ErrUnexpectedEOF):
		return "the document is not valid JSON: it ends before the JSON value is complete"
	case errors.As(err, &syntax):
		return fmt.Sprintf("the document is not valid JSON at byte offset %d: %v", syntax.Offset, err)
	default:
		return fmt.Sprintf("the document is not valid JSON: %v", err)
	}
}

func (p *parser) document(obj map[string]any) *Document {
	d := &Document{}
	for _, k := range sortedKeys(obj) {
		switch k {
		case "Version", "Id", "Statement":
		default:
			p.addf("unknown top-level element %q; a policy may contain only Version, Id and Statement", k)
		}
	}

	if v, ok := obj["Version"]; !ok {
		p.addf("Version is required; use %q", Version2012)
	} else if s, isString := v.(string); !isString {
		p.addf("Version must be a string, got %s", kind(v))
	} else if s != Version2012 && s != Version2008 {
		p.addf("Version %q is not a policy language version; use %q (or %q)", s, Version2012, Version2008)
	} else {
		d.Version = s
	}

	if v, ok := obj["Id"]; ok {
		if s, isString := v.(string); isString {
			d.ID = s
		} else {
			p.addf("Id must be a string, got %s", kind(v))
		}
	}

	// Statement may be one statement object or an array of them.
	switch v := obj["Statement"].(type) {
	case map[string]any:
		d.Statements = []Statement{p.statement(0, v)}
	case []any:
		if len(v) == 0 {
			p.addf("Statement must contain at least one statement")
		}
		for i, e := range v {
			m, ok := e.(map[string]any)
			if !ok {
				p.addf("Statement[%d] must be an object, got %s", i, kind(e))
				continue
			}
			d.Statements = append(d.Statements, p.statement(i, m))
		}
	default:
		if _, ok := obj["Statement"]; !ok {
			p.addf("Statement is required and must contain at least one statement")
		} else {
			p.addf("Statement must be an object or an array of objects, got %s", kind(v))
		}
	}
	return d
}

var statementKeys = []string{
	"Sid", "Effect", "Principal", "NotPrincipal", "Action", "NotAction",
	"Resource", "NotResource", "Condition",
}

func (p *parser) statement(i int, m map[string]any) Statement {
	var s Statement
	loc := statementLocation(i, "")
	if v, ok := m["Sid"]; ok {
		if sid, isString := v.(string); isString {
			s.Sid = sid
			loc = statementLocation(i, sid)
		} else {
			p.addf("%s: Sid must be a string, got %s", loc, kind(v))
		}
	}
	for _, k := range sortedKeys(m) {
		if !slices.Contains(statementKeys, k) {
			p.addf("%s: unknown element %q; a statement may contain only %s", loc, k, strings.Join(statementKeys, ", "))
		}
	}

	if v, ok := m["Effect"]; !ok {
		p.addf("%s: Effect is required; use %q or %q", loc, Allow, Deny)
	} else if e, isString := v.(string); !isString {
		p.addf("%s: Effect must be %q or %q, got %s", loc, Allow, Deny, kind(v))
	} else if Effect(e) != Allow && Effect(e) != Deny {
		p.addf("%s: Effect must be %q or %q, got %q", loc, Allow, Deny, e)
	} else {
		s.Effect = Effect(e)
	}

	_, hasPrincipal := m["Principal"]
	_, hasNotPrincipal := m["NotPrincipal"]
	if hasPrincipal && hasNotPrincipal {
		p.addf("%s: a statement must not have both Principal and NotPrincipal", loc)
	}
	if hasPrincipal {
		s.Principal = p.principal(loc, "Principal", m["Principal"])
	}
	if hasNotPrincipal {
		s.NotPrincipal = p.principal(loc, "NotPrincipal", m["NotPrincipal"])
	}
	if p.resource && !hasPrincipal && !hasNotPrincipal {
		p.addf("%s: a resource policy statement must name a Principal or NotPrincipal, such as {\"AWS\": \"arn:aws:iam::123456789012:user/app\"}", loc)
	}

	_, hasAction := m["Action"]
	_, hasNotAction := m["NotAction"]
	switch {
	case !hasAction && !hasNotAction:
		p.addf("%s: a statement must have Action or NotAction", loc)
	case hasAction && hasNotAction:
		p.addf("%s: a statement must not have both Action and NotAction", loc)
	}
	if hasAction {
		s.Action = p.stringList(loc, "Action", m["Action"], checkAction)
	}
	if hasNotAction {
		s.NotAction = p.stringList(loc, "NotAction", m["NotAction"], checkAction)
	}

	_, hasResource := m["Resource"]
	_, hasNotResource := m["NotResource"]
	if hasResource && hasNotResource {
		p.addf("%s: a statement must not have both Resource and NotResource", loc)
	}
	if hasResource {
		s.Resource = p.stringList(loc, "Resource", m["Resource"], checkNotEmpty)
	}
	if hasNotResource {
		s.NotResource = p.stringList(loc, "NotResource", m["NotResource"], checkNotEmpty)
	}

	if v, ok := m["Condition"]; ok {
		s.Condition = p.condition(loc, v)
	}
	return s
}

// statementLocation names a statement in messages. It always uses the index,
// even when the document has a single statement object, so that a message
// reads the same whichever form the author chose.
func statementLocation(i int, sid string) string {
	if sid == "" {
		return fmt.Sprintf("Statement[%d]", i)
	}
	return fmt.Sprintf("Statement[%d] (Sid %q)", i, sid)
}

var principalKeys = []string{"AWS", "Service", "Federated", "CanonicalUser"}

func (p *parser) principal(loc, field string, v any) *Principal {
	const example = `{"AWS": "arn:aws:iam::123456789012:root"}`
	switch v := v.(type) {
	case string:
		if v != "*" {
			p.addf("%s: %s must be \"*\" or an object such as %s, got %q", loc, field, example, v)
		}
		return &Principal{Wildcard: v == "*"}
	case map[string]any:
		if len(v) == 0 {
			p.addf("%s: %s must name at least one principal, such as %s", loc, field, example)
		}
		pr := &Principal{}
		for _, k := range sortedKeys(v) {
			name := field + "." + k
			switch k {
			case "AWS":
				pr.AWS = p.stringList(loc, name, v[k], checkNotEmpty)
			case "Service":
				pr.Service = p.stringList(loc, name, v[k], checkNotEmpty)
			case "Federated":
				pr.Federated = p.stringList(loc, name, v[k], checkNotEmpty)
			case "CanonicalUser":
				pr.CanonicalUser = p.stringList(loc, name, v[k], checkNotEmpty)
			default:
				p.addf("%s: %s has unknown principal type %q; use %s", loc, field, k, strings.Join(principalKeys, ", "))
			}
		}
		return pr
	default:
		p.addf("%s: %s must be \"*\" or an object such as %s, got %s", loc, field, example, kind(v))
		return nil
	}
}

// stringList reads an element that may be one string or an array of
// strings, reporting each value check rejects. check returns "" for a good
// value, or what is wrong with it.
func (p *parser) stringList(loc, field string, v any, check func(string) string) []string {
	switch v := v.(type) {
	case string:
		if problem := check(v); problem != "" {
			p.addf("%s: %s %q %s", loc, field, v, problem)
		}
		return []string{v}
	case []any:
		if len(v) == 0 {
			p.addf("%s: %s must not be an empty array", loc, field)
			return nil
		}
		out := make([]string, 0, len(v))
		for i, e := range v {
			s, ok := e.(string)
			if !ok {
				p.addf("%s: %s[%d] must be a string, got %s", loc, field, i, kind(e))
				continue
			}
			if problem := check(s); problem != "" {
				p.addf("%s: %s[%d] %q %s", loc, field, i, s, problem)
			}
			out = append(out, s)
		}
		return out
	default:
		p.addf("%s: %s must be a string or an array of strings, got %s", loc, field, kind(v))
		return nil
	}
}

// actionPattern is "*" or service:ActionName. Action names are
// case-insensitive in IAM, so either case is accepted.
var actionPattern = regexp.MustCompile(`^(\*|[A-Za-z0-9*?-]+:[A-Za-z0-9*?]+)$`)

func checkAction(a string) string {
	if actionPattern.MatchString(a) {
		return ""
	}
	return `is not of the form "service:ActionName", such as "secretsmanager:GetSecretValue" (* and ? are wildcards)`
}

func checkNotEmpty(s string) string {
	if s == "" {
		return "must not be empty"
	}
	return ""
}

func (p *parser) condition(loc string, v any) map[string]map[string][]string {
	ops, ok := v.(map[string]any)
	if !ok {
		p.addf("%s: Condition must be an object mapping operators to {key: values}, got %s", loc, kind(v))
		return nil
	}
	out := make(map[string]map[string][]string, len(ops))
	for _, op := range sortedKeys(ops) {
		if !knownOperator(op) {
			p.addf("%s: Condition operator %q is not an IAM condition operator, such as StringEquals, ArnLike or ForAnyValue:StringLikeIfExists", loc, op)
			continue
		}
		block, ok := ops[op].(map[string]any)
		if !ok {
			p.addf("%s: Condition.%s must be an object mapping condition keys to values, got %s", loc, op, kind(ops[op]))
			continue
		}
		if len(block) == 0 {
			p.addf("%s: Condition.%s must contain at least one condition key", loc, op)
			continue
		}
		keys := make(map[string][]string, len(block))
		for _, key := range sortedKeys(block) {
			if key == "" {
				p.addf("%s: Condition.%s has an empty condition key", loc, op)
				continue
			}
			keys[key] = p.conditionValues(loc, op, key, block[key])
		}
		out[op] = keys
	}
	return out
}

// conditionValues reads a condition's values: a string, boolean or number,
// or a non-empty array of them, each kept as its JSON text.
func (p *parser) conditionValues(loc, op, key string, v any) []string {
	const want = "a string, boolean, number or an array of them"
	if arr, ok := v.([]any); ok {
		if len(arr) == 0 {
			p.addf("%s: Condition.%s[%q] must not be an empty array", loc, op, key)
			return nil
		}
		out := make([]string, 0, len(arr))
		for i, e := range arr {
			s, ok := scalarText(e)
			if !ok {
				p.addf("%s: Condition.%s[%q][%d] must be a string, boolean or number, got %s", loc, op, key, i, kind(e))
				continue
			}
			out = append(out, s)
		}
		return out
	}
	s, ok := scalarText(v)
	if !ok {
		p.addf("%s: Condition.%s[%q] must be %s, got %s", loc, op, key, want, kind(v))
		return nil
	}
	return []string{s}
}

func scalarText(v any) (string, bool) {
	switch v := v.(type) {
	case string:
		return v, true
	case bool:
		return strconv.FormatBool(v), true
	case json.Number:
		return v.String(), true
	default:
		return "", false
	}
}

// conditionOperators are the IAM condition operators without the
// ForAllValues:/ForAnyValue: prefix or IfExists suffix.
var conditionOperators = []string{
	"StringEquals", "StringNotEquals", "StringEqualsIgnoreCase", "StringNotEqualsIgnoreCase",
	"StringLike", "StringNotLike",
	"NumericEquals", "NumericNotEquals", "NumericLessThan", "NumericLessThanEquals",
	"NumericGreaterThan", "NumericGreaterThanEquals",
	"DateEquals", "DateNotEquals", "DateLessThan", "DateLessThanEquals",
	"DateGreaterThan", "DateGreaterThanEquals",
	"Bool", "BinaryEquals", "IpAddress", "NotIpAddress",
	"ArnEquals", "ArnLike", "ArnNotEquals", "ArnNotLike",
	"Null",
}

// knownOperator reports whether op is an IAM condition operator, optionally
// qualified by a set prefix and an IfExists suffix. Null takes no IfExists:
// it already tests whether the key exists.
func knownOperator(op string) bool {
	if prefix, rest, ok := strings.Cut(op, ":"); ok {
		if prefix != "ForAllValues" && prefix != "ForAnyValue" {
			return false
		}
		op = rest
	}
	base, ifExists := strings.CutSuffix(op, "IfExists")
	if ifExists && base == "Null" {
		return false
	}
	return slices.Contains(conditionOperators, base)
}

// kind names a decoded JSON value's type for messages.
func kind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	default:
		return fmt.Sprintf("%T", v)
	}
}

// sortedKeys makes problems come out in the same order on every run;
// JSON objects decode into maps, which have none.
func sortedKeys[V any](m map[string]V) []string {
	return slices.Sorted(maps.Keys(m))
}
