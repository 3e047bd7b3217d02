package storage

import "google.golang.org/protobuf/reflect/protoreflect"

// CommandChangeKind is the change kind watchers get for a command, and
// whether the command is classified at all (watch.go changeKinds).
func CommandChangeKind(op protoreflect.FullName) (ChangeKind, bool) {
	k, ok := changeKinds[op]
	return k, ok
}
