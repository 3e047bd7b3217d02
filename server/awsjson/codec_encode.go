package awsjson

import (
	"bytes"
	"encoding/base64"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

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
