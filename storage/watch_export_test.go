package storage

import "google.golang.org/protobuf/reflect/protoreflect"

// CommandChangeKind is the change kind watchers get for a command (its
// command table entry's), and whether the table has an entry for it.
func CommandChangeKind(op protoreflect.FullName) (ChangeKind, bool) {
	c, ok := commands[op]
	return c.watch, ok
}
