package awsjson

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// The codec maps AWS JSON onto the proto messages by their descriptors, so a
// field added to secrets.proto appears on the AWS wire with no code here.
// The rules are the AWS JSON 1.1 ones:
//
//   - member names are the proto names in PascalCase, except the AWS
//     spellings in memberNameExceptions;
//   - google.protobuf.Timestamp is epoch seconds, a JSON number with
//     millisecond fractions;
//   - bytes are standard base64;
//   - map<string, VersionStages> is an object of bare string lists;
//   - a response omits unset and zero members, except alwaysEmitted ones.

// memberNameExceptions are the proto fields whose AWS member name is not
// plain PascalCase.
var memberNameExceptions = map[protoreflect.Name]string{
	"arn":                 "ARN",
	"rotation_lambda_arn": "RotationLambdaARN",
}

// fieldNameExceptions are single fields whose AWS member name differs
// from both PascalCase and memberNameExceptions (KMS spells its key ARN
// "Arn", and its account "AWSAccountId").
var fieldNameExceptions = map[protoreflect.FullName]string{
	"coffer.v1.KeyMetadata.arn":            "Arn",
	"coffer.v1.KeyMetadata.aws_account_id": "AWSAccountId",
}

// alwaysEmitted are response members AWS sends even when empty or false.
// Callers that index the response (boto3's resp["SecretList"]) depend on
// them; typed SDKs do not care either way.
var alwaysEmitted = map[protoreflect.FullName]bool{
	"coffer.v1.ListSecretsResponse.secret_list":                         true,
	"coffer.v1.ListSecretVersionIdsResponse.versions":                   true,
	"coffer.v1.BatchGetSecretValueResponse.secret_values":               true,
	"coffer.v1.BatchGetSecretValueResponse.errors":                      true,
	"coffer.v1.ValidateResourcePolicyResponse.policy_validation_passed": true,
	"coffer.v1.ValidateResourcePolicyResponse.validation_errors":        true,
	"coffer.v1.ListKeysResponse.keys":                                   true,
	"coffer.v1.ListKeysResponse.truncated":                              true,
	"coffer.v1.ListAliasesResponse.aliases":                             true,
	"coffer.v1.ListAliasesResponse.truncated":                           true,
	"coffer.v1.KeyMetadata.enabled":                                     true,
	"coffer.v1.GetKeyRotationStatusResponse.key_rotation_enabled":       true,
}

var (
	timestampName     = (&timestamppb.Timestamp{}).ProtoReflect().Descriptor().FullName()
	versionStagesName = (&cofferv1.VersionStages{}).ProtoReflect().Descriptor().FullName()
)

// memberName is the AWS JSON member name of a proto field.
func memberName(fd protoreflect.FieldDescriptor) string {
	if n, ok := fieldNameExceptions[fd.FullName()]; ok {
		return n
	}
	if n, ok := memberNameExceptions[fd.Name()]; ok {
		return n
	}
	var b strings.Builder
	for part := range strings.SplitSeq(string(fd.Name()), "_") {
		if part == "" {
			continue
		}
		b.WriteString(strings.ToUpper(part[:1]))
		b.WriteString(part[1:])
	}
	return b.String()
}

// cofferOnly are fields of Coffer's own API that the AWS model lacks. The
// AWS protocol neither sends nor accepts them, so SDKs see AWS's shapes
// exactly; the gRPC API and the CLI show them.
var cofferOnly = map[protoreflect.FullName]bool{
	"coffer.v1.DescribeSecretResponse.rotation_status": true,
	"coffer.v1.PutResourcePolicyResponse.warnings":     true,
}

// member is one proto field as it appears on the wire.
type member struct {
	fd     protoreflect.FieldDescriptor
	name   string
	always bool
}

// shape is a message's members, in field order, and by AWS name.
type shape struct {
	members []member
	byName  map[string]*member
}

var shapes sync.Map // protoreflect.FullName -> *shape

func shapeOf(md protoreflect.MessageDescriptor) *shape {
	if s, ok := shapes.Load(md.FullName()); ok {
		return s.(*shape)
	}
	fields := md.Fields()
	s := &shape{members: make([]member, 0, fields.Len()), byName: make(map[string]*member, fields.Len())}
	for i := range fields.Len() {
		fd := fields.Get(i)
		if cofferOnly[fd.FullName()] {
			continue
		}
		s.members = append(s.members, member{fd: fd, name: memberName(fd), always: alwaysEmitted[fd.FullName()]})
	}
	for i := range s.members {
		s.byName[s.members[i].name] = &s.members[i]
	}
	actual, _ := shapes.LoadOrStore(md.FullName(), s)
	return actual.(*shape)
}

// errSerialization is a request body that is not the operation's input
// shape; it renders as SerializationException.
type errSerialization struct{ msg string }

func (e *errSerialization) Error() string { return e.msg }

func serializationErr(format string, args ...any) error {
	return &errSerialization{msg: fmt.Sprintf(format, args...)}
}

// wrongType names the member whose JSON value has the wrong type.
func wrongType(path, want string, got any) error {
	return serializationErr("Unable to parse member %s: expected %s, got %s.", path, want, jsonKind(got))
}

func jsonKind(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case bool:
		return "a boolean"
	case []any:
		return "a list"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// decodeRequest fills m from an AWS JSON body. An empty body is {}; unknown
// members are ignored, as newer SDKs may send members this server predates;
// null members are absent.
func decodeRequest(body []byte, m proto.Message) error {
	if len(bytes.TrimSpace(body)) == 0 {
		return nil
	}
	// encoding/json would quietly turn invalid bytes into U+FFFD, which would
	// store a different secret than the caller sent.
	if !utf8.Valid(body) {
		return serializationErr("The request body is not valid UTF-8.")
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return serializationErr("The request body is not valid JSON: %s.", jsonErrText(err))
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return serializationErr("The request body has data after its JSON value.")
	}
	if v == nil {
		return nil
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return serializationErr("The request body must be a JSON object, not %s.", jsonKind(v))
	}
	return decodeMessage(obj, m.ProtoReflect(), "")
}

// jsonErrText is the parser's complaint without Go type names.
func jsonErrText(err error) string {
	var syn *json.SyntaxError
	if errors.As(err, &syn) {
		return fmt.Sprintf("%s at offset %d", syn.Error(), syn.Offset)
	}
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		return "unexpected end of input"
	}
	return err.Error()
}

func decodeMessage(obj map[string]any, m protoreflect.Message, path string) error {
	s := shapeOf(m.Descriptor())
	for name, v := range obj {
		mem, ok := s.byName[name]
		if !ok || v == nil {
			continue
		}
		p := name
		if path != "" {
			p = path + "." + name
		}
		if err := decodeField(m, mem.fd, v, p); err != nil {
			return err
		}
	}
	return nil
}

func decodeField(m protoreflect.Message, fd protoreflect.FieldDescriptor, v any, path string) error {
	switch {
	case fd.IsList():
		items, ok := v.([]any)
		if !ok {
			return wrongType(path, "a list", v)
		}
		list := m.Mutable(fd).List()
		for i, item := range items {
			p := fmt.Sprintf("%s[%d]", path, i)
			if item == nil {
				return serializationErr("Unable to parse member %s: null is not allowed in a list.", p)
			}
			if fd.Kind() == protoreflect.MessageKind {
				el := list.NewElement()
				if err := decodeMessageValue(el.Message(), item, p); err != nil {
					return err
				}
				list.Append(el)
				continue
			}
			val, err := decodeScalar(fd, item, p)
			if err != nil {
				return err
			}
			list.Append(val)
		}
		return nil
	case fd.IsMap():
		obj, ok := v.(map[string]any)
		if !ok {
			return wrongType(path, "an object", v)
		}
		mp := m.Mutable(fd).Map()
		for k, item := range obj {
			p := path + "." + k
			if item == nil {
				continue
			}
			key, err := decodeScalar(fd.MapKey(), k, p)
			if err != nil {
				return err
			}
			vd := fd.MapValue()
			if vd.Kind() == protoreflect.MessageKind {
				val := mp.NewValue()
				if err := decodeMessageValue(val.Message(), item, p); err != nil {
					return err
				}
				mp.Set(key.MapKey(), val)
				continue
			}
			val, err := decodeScalar(vd, item, p)
			if err != nil {
				return err
			}
			mp.Set(key.MapKey(), val)
		}
		return nil
	case fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind:
		return decodeMessageValue(m.Mutable(fd).Message(), v, path)
	}
	val, err := decodeScalar(fd, v, path)
	if err != nil {
		return err
	}
	m.Set(fd, val)
	return nil
}

// decodeMessageValue fills a message-typed value: a timestamp, a stage list
// or an object.
func decodeMessageValue(m protoreflect.Message, v any, path string) error {
	switch m.Descriptor().FullName() {
	case timestampName:
		n, ok := v.(json.Number)
		if !ok {
			return wrongType(path, "epoch seconds", v)
		}
		ts, err := parseEpochSeconds(string(n))
		if err != nil {
			return serializationErr("Unable to parse member %s: %s.", path, err)
		}
		proto.Merge(m.Interface(), ts)
		return nil
	case versionStagesName:
		return decodeField(m, m.Descriptor().Fields().ByName("stages"), v, path)
	}
	obj, ok := v.(map[string]any)
	if !ok {
		return wrongType(path, "an object", v)
	}
	return decodeMessage(obj, m, path)
}

func decodeScalar(fd protoreflect.FieldDescriptor, v any, path string) (protoreflect.Value, error) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		s, ok := v.(string)
		if !ok {
			return protoreflect.Value{}, wrongType(path, "a string", v)
		}
		return protoreflect.ValueOfString(s), nil
	case protoreflect.BytesKind:
		s, ok := v.(string)
		if !ok {
			return protoreflect.Value{}, wrongType(path, "a base64 string", v)
		}
		b, err := base64.StdEncoding.DecodeString(s)
		if err != nil {
			return protoreflect.Value{}, serializationErr("Unable to parse member %s: not valid base64.", path)
		}
		return protoreflect.ValueOfBytes(b), nil
	case protoreflect.BoolKind:
		b, ok := v.(bool)
		if !ok {
			return protoreflect.Value{}, wrongType(path, "a boolean", v)
		}
		return protoreflect.ValueOfBool(b), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		i, err := integer(v, path, math.MinInt32, math.MaxInt32)
		return protoreflect.ValueOfInt32(int32(i)), err
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		i, err := integer(v, path, math.MinInt64, math.MaxInt64)
		return protoreflect.ValueOfInt64(i), err
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		i, err := integer(v, path, 0, math.MaxUint32)
		return protoreflect.ValueOfUint32(uint32(i)), err
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		i, err := integer(v, path, 0, math.MaxInt64)
		return protoreflect.ValueOfUint64(uint64(i)), err
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		n, ok := v.(json.Number)
		if !ok {
			return protoreflect.Value{}, wrongType(path, "a number", v)
		}
		f, err := strconv.ParseFloat(string(n), 64)
		if err != nil {
			return protoreflect.Value{}, serializationErr("Unable to parse member %s: %s is out of range.", path, n)
		}
		if fd.Kind() == protoreflect.FloatKind {
			return protoreflect.ValueOfFloat32(float32(f)), nil
		}
		return protoreflect.ValueOfFloat64(f), nil
	case protoreflect.EnumKind:
		s, ok := v.(string)
		if !ok {
			return protoreflect.Value{}, wrongType(path, "a string", v)
		}
		ev := fd.Enum().Values().ByName(protoreflect.Name(s))
		if ev == nil {
			return protoreflect.Value{}, serializationErr("Unable to parse member %s: unknown value %q.", path, s)
		}
		return protoreflect.ValueOfEnum(ev.Number()), nil
	}
	return protoreflect.Value{}, serializationErr("Unable to parse member %s: unsupported type.", path)
}

// integer reads an integral JSON number within [lo, hi]. 7 and 7.0 and 7e0
// are all 7; 7.5 is refused rather than truncated.
func integer(v any, path string, lo, hi int64) (int64, error) {
	n, ok := v.(json.Number)
	if !ok {
		return 0, wrongType(path, "an integer", v)
	}
	i, err := strconv.ParseInt(string(n), 10, 64)
	if err != nil {
		f, ferr := strconv.ParseFloat(string(n), 64)
		if ferr != nil || f != math.Trunc(f) {
			return 0, serializationErr("Unable to parse member %s: %s is not an integer.", path, n)
		}
		if f < float64(lo) || f >= float64(hi)+1 {
			return 0, serializationErr("Unable to parse member %s: %s is out of range.", path, n)
		}
		i = int64(f)
	}
	if i < lo || i > hi {
		return 0, serializationErr("Unable to parse member %s: %s is out of range.", path, n)
	}
	return i, nil
}

func parseEpochSeconds(s string) (*timestamppb.Timestamp, error) {
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || math.IsInf(f, 0) || math.IsNaN(f) {
		return nil, fmt.Errorf("%s is not a timestamp", s)
	}
	sec := math.Floor(f)
	ms := math.Round((f - sec) * 1000)
	ts := &timestamppb.Timestamp{Seconds: int64(sec), Nanos: int32(ms) * 1e6}
	if ms >= 1000 {
		ts.Seconds, ts.Nanos = ts.Seconds+1, 0
	}
	if err := ts.CheckValid(); err != nil {
		return nil, fmt.Errorf("%s is out of range", s)
	}
	return ts, nil
}

// encodeResponse renders m as AWS JSON.
func encodeResponse(b []byte, m proto.Message) []byte {
	if m == nil || !m.ProtoReflect().IsValid() {
		return append(b, "{}"...)
	}
	b = appendMessage(b, m.ProtoReflect())
	// DescribeSecret keeps "Tags": [] for a secret that has had tags and
	// has none left, as AWS does, and omits it for one never tagged; the
	// service tells them apart by a non-nil empty list (proto3 cannot
	// carry the difference, so it holds only in process, as here).
	if d, ok := m.(*cofferv1.DescribeSecretResponse); ok && d.Tags != nil && len(d.Tags) == 0 {
		if len(b) > 2 {
			b = append(b[:len(b)-1], `,"Tags":[]}`...)
		} else {
			b = append(b[:len(b)-1], `"Tags":[]}`...)
		}
	}
	return b
}

func appendMessage(b []byte, m protoreflect.Message) []byte {
	b = append(b, '{')
	first := true
	s := shapeOf(m.Descriptor())
	for i := range s.members {
		mem := &s.members[i]
		if !mem.always && !m.Has(mem.fd) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = appendString(b, mem.name)
		b = append(b, ':')
		b = appendField(b, mem.fd, m.Get(mem.fd))
	}
	return append(b, '}')
}

func appendField(b []byte, fd protoreflect.FieldDescriptor, v protoreflect.Value) []byte {
	switch {
	case fd.IsList():
		list := v.List()
		b = append(b, '[')
		for i := range list.Len() {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendValue(b, fd, list.Get(i))
		}
		return append(b, ']')
	case fd.IsMap():
		mp := v.Map()
		keys := make([]protoreflect.MapKey, 0, mp.Len())
		mp.Range(func(k protoreflect.MapKey, _ protoreflect.Value) bool {
			keys = append(keys, k)
			return true
		})
		slices.SortFunc(keys, func(x, y protoreflect.MapKey) int { return strings.Compare(x.String(), y.String()) })
		b = append(b, '{')
		for i, k := range keys {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, k.String())
			b = append(b, ':')
			b = appendValue(b, fd.MapValue(), mp.Get(k))
		}
		return append(b, '}')
	}
	return appendValue(b, fd, v)
}

// appendValue renders one singular value of fd's kind.
func appendValue(b []byte, fd protoreflect.FieldDescriptor, v protoreflect.Value) []byte {
	switch fd.Kind() {
	case protoreflect.MessageKind, protoreflect.GroupKind:
		m := v.Message()
		switch m.Descriptor().FullName() {
		case timestampName:
			f := m.Descriptor().Fields()
			return appendEpochSeconds(b, m.Get(f.ByName("seconds")).Int(), m.Get(f.ByName("nanos")).Int())
		case versionStagesName:
			return appendField(b, m.Descriptor().Fields().ByName("stages"), m.Get(m.Descriptor().Fields().ByName("stages")))
		}
		return appendMessage(b, m)
	case protoreflect.StringKind:
		return appendString(b, v.String())
	case protoreflect.BytesKind:
		b = append(b, '"')
		b = base64.StdEncoding.AppendEncode(b, v.Bytes())
		return append(b, '"')
	case protoreflect.BoolKind:
		return strconv.AppendBool(b, v.Bool())
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return strconv.AppendInt(b, v.Int(), 10)
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind, protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return strconv.AppendUint(b, v.Uint(), 10)
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		f := v.Float()
		if math.IsInf(f, 0) || math.IsNaN(f) {
			return append(b, "null"...)
		}
		return strconv.AppendFloat(b, f, 'g', -1, 64)
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return appendString(b, string(ev.Name()))
		}
		return strconv.AppendInt(b, int64(v.Enum()), 10)
	}
	return append(b, "null"...)
}

// appendEpochSeconds writes a time as AWS does: seconds since the epoch,
// with up to three decimals (1763812345.123, or 1763812345 on the second).
func appendEpochSeconds(b []byte, sec, nanos int64) []byte {
	ms := sec*1000 + nanos/1e6
	if ms < 0 {
		b = append(b, '-')
		ms = -ms
	}
	b = strconv.AppendInt(b, ms/1000, 10)
	if frac := ms % 1000; frac != 0 {
		digits := []byte{'.', byte('0' + frac/100), byte('0' + frac/10%10), byte('0' + frac%10)}
		b = append(b, bytes.TrimRight(digits, "0")...)
	}
	return b
}

// appendString writes s as a JSON string, escaping as encoding/json does
// (minus HTML escaping); invalid UTF-8 becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			case '\b':
				b = append(b, '\\', 'b')
			case '\f':
				b = append(b, '\\', 'f')
			default:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = append(b, s[start:i]...)
			b = append(b, `\ufffd`...)
			i += size
			start = i
			continue
		}
		// U+2028 and U+2029 are valid JSON but break JavaScript readers.
		if r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
