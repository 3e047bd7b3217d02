package awsjson

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"strconv"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/timestamppb"
)

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
