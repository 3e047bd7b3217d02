package main

import (
	"bytes"
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// print writes resp as JSON with -o json, and otherwise as the table that
// fill writes.
func (l *leaf) print(resp proto.Message, fill func(t *table)) error {
	if l.inv.opts.output == outputJSON {
		b, err := marshalJSON(resp)
		if err != nil {
			return err
		}
		_, err = l.inv.stdout.Write(b)
		return err
	}
	t := &table{tw: tabwriter.NewWriter(l.inv.stdout, 0, 8, 2, ' ', 0)}
	fill(t)
	return t.tw.Flush()
}

// marshalJSON renders m as protobuf JSON (lowerCamelCase names, unset fields
// left out) indented by two spaces, with a final newline. protojson varies its
// whitespace from build to build on purpose, so the result is re-indented with
// encoding/json to give scripts and diffs the same bytes every time.
func marshalJSON(m proto.Message) ([]byte, error) {
	raw, err := protojson.MarshalOptions{Multiline: true, Indent: "  "}.Marshal(m)
	if err != nil {
		return nil, err
	}
	var out bytes.Buffer
	if err := json.Indent(&out, bytes.TrimSpace(raw), "", "  "); err != nil {
		return nil, err
	}
	out.WriteByte('\n')
	return out.Bytes(), nil
}

// table writes aligned columns: FIELD/VALUE rows for one object, or a header
// and one row per item for a list.
type table struct {
	tw *tabwriter.Writer
}

// field writes a FIELD/VALUE row, unless value is empty.
func (t *table) field(name, value string) {
	if value != "" {
		fmt.Fprintf(t.tw, "%s\t%s\n", name, cell(value))
	}
}

// fieldLines writes a field whose values take one line each.
func (t *table) fieldLines(name string, values []string) {
	for _, v := range values {
		fmt.Fprintf(t.tw, "%s\t%s\n", name, cell(v))
		name = ""
	}
}

// row writes one row of a list; empty cells show as "-".
func (t *table) row(cells ...string) {
	for i, c := range cells {
		if c == "" {
			cells[i] = "-"
		} else {
			cells[i] = cell(c)
		}
	}
	fmt.Fprintln(t.tw, strings.Join(cells, "\t"))
}

// cell makes s safe for one table cell: text with tabs, newlines, other
// control characters or invalid UTF-8 is shown as a quoted Go string, so it
// can neither break the columns nor send escape sequences to the terminal.
func cell(s string) string {
	if !utf8.ValidString(s) || strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return strconv.Quote(s)
	}
	return s
}

// formatTime renders ts in RFC 3339 UTC; unset is "".
func formatTime(ts *timestamppb.Timestamp) string {
	if ts == nil {
		return ""
	}
	return ts.AsTime().UTC().Format(time.RFC3339)
}

func formatBool(b bool) string { return strconv.FormatBool(b) }

// stageOrder ranks the labels a reader looks for first.
var stageOrder = map[string]int{"AWSCURRENT": 1, "AWSPENDING": 2, "AWSPREVIOUS": 3}

// versionStageLines renders a version-to-labels map as "id: LABEL,LABEL"
// lines: AWSCURRENT's version first, then AWSPENDING's, AWSPREVIOUS's, and
// the rest by id.
func versionStageLines(m map[string]*cofferv1.VersionStages) []string {
	rank := func(id string) int {
		best := len(stageOrder) + 1
		for _, s := range m[id].GetStages() {
			if r, ok := stageOrder[s]; ok && r < best {
				best = r
			}
		}
		return best
	}
	ids := make([]string, 0, len(m))
	for id := range m {
		ids = append(ids, id)
	}
	slices.SortFunc(ids, func(a, b string) int {
		return cmp.Or(cmp.Compare(rank(a), rank(b)), strings.Compare(a, b))
	})
	lines := make([]string, len(ids))
	for i, id := range ids {
		lines[i] = id + ": " + strings.Join(m[id].GetStages(), ",")
	}
	return lines
}

func tagLines(tags []*cofferv1.Tag) []string {
	lines := make([]string, len(tags))
	for i, t := range tags {
		lines[i] = t.GetKey() + "=" + t.GetValue()
	}
	return lines
}

// formatRotationRules renders a schedule as "every 30 days" or the schedule
// expression, with the window's duration when there is one.
func formatRotationRules(r *cofferv1.RotationRules) string {
	if r == nil {
		return ""
	}
	var parts []string
	switch {
	case r.GetScheduleExpression() != "":
		parts = append(parts, r.GetScheduleExpression())
	case r.AutomaticallyAfterDays != nil:
		parts = append(parts, fmt.Sprintf("every %d days", r.GetAutomaticallyAfterDays()))
	}
	if r.GetDuration() != "" {
		parts = append(parts, "window "+r.GetDuration())
	}
	return strings.Join(parts, ", ")
}

func replicationLines(rs []*cofferv1.ReplicationStatus) []string {
	lines := make([]string, len(rs))
	for i, r := range rs {
		lines[i] = r.GetRegion() + ": " + r.GetStatus()
		if r.GetStatusMessage() != "" {
			lines[i] += " (" + r.GetStatusMessage() + ")"
		}
	}
	return lines
}

// printLine writes resp as JSON with -o json, and otherwise the one line of
// text that says what happened.
func (l *leaf) printLine(resp proto.Message, line string) error {
	if l.inv.opts.output == outputJSON {
		return l.print(resp, nil)
	}
	_, err := fmt.Fprintln(l.inv.stdout, line)
	return err
}

// orNone is s, or "(none)" for an empty s, for names in a sentence.
func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return cell(s)
}
