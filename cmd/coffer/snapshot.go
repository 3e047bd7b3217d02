package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	cofferv1 "github.com/cofferhq/coffer/proto/coffer/v1"
)

// snapshotChunk is the size of the pieces an upload is sent in, the size the
// server sends its downloads in.
const snapshotChunk = 256 << 10

// runSnapshotSave downloads a snapshot. A file is written as FILE.part and
// renamed only once it holds every byte the server announced and is synced,
// so FILE is either a whole snapshot or not there.
func runSnapshotSave(l *leaf, args []string) error {
	forceProgress := l.fs.Bool("progress", false, "show progress on stderr even when it is not a terminal")
	pos, err := l.parse(args, "FILE")
	if err != nil {
		return err
	}
	name := pos[0]
	toStdout := name == "-"
	// With "-" stdout is the snapshot, and often a pipe whose reader shares
	// the terminal: progress only when asked for.
	var prog *progress
	if *forceProgress || (!toStdout && isTerminal(l.inv.stderr)) {
		prog = newProgress(l.inv.stderr, "saving snapshot")
	}
	var out io.Writer = l.inv.stdout
	var part *partFile
	if !toStdout {
		// Created before the RPC, so a path that cannot be written fails
		// before the server takes a snapshot.
		if part, err = createPart(name); err != nil {
			return err
		}
		defer part.discard()
		out = part.f
	}
	info, n, err := downloadSnapshot(l, out, prog)
	prog.end()
	if err != nil {
		return err
	}
	if toStdout {
		if prog != nil {
			fmt.Fprintf(l.inv.stderr, "saved snapshot of index %d (%d bytes) to stdout\n", info.GetIndex(), n)
		}
		return nil
	}
	if err := part.commit(); err != nil {
		return err
	}
	return l.printLine(info, fmt.Sprintf("saved snapshot of index %d (%d bytes) to %s", info.GetIndex(), n, cell(name)))
}

// downloadSnapshot copies the SaveSnapshot stream to w and returns its info
// and the number of bytes written, which is the size the info announced.
func downloadSnapshot(l *leaf, w io.Writer, prog *progress) (*cofferv1.SnapshotInfo, int64, error) {
	conn, err := l.inv.connect()
	if err != nil {
		return nil, 0, err
	}
	ctx, watch := watchStalls(l.inv.ctx, l.inv.opts.timeout)
	defer watch.stop()
	stream, err := cofferv1.NewAdminServiceClient(conn).SaveSnapshot(ctx, &cofferv1.SaveSnapshotRequest{})
	if err != nil {
		return nil, 0, watch.explain(err)
	}
	var (
		info *cofferv1.SnapshotInfo
		n    int64
	)
	for {
		msg, err := stream.Recv()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return nil, n, watch.explain(err)
		}
		watch.progress()
		switch part := msg.GetPart().(type) {
		case *cofferv1.SaveSnapshotResponse_Info:
			if info != nil {
				return nil, n, errors.New("the server sent the snapshot's info twice")
			}
			if part.Info.GetSize() < 0 {
				return nil, n, fmt.Errorf("the server announced a snapshot of %d bytes", part.Info.GetSize())
			}
			info = part.Info
			prog.start(info.GetSize())
		case *cofferv1.SaveSnapshotResponse_Chunk:
			if info == nil {
				return nil, n, errors.New("the server sent snapshot data before the snapshot's size and index")
			}
			if int64(len(part.Chunk)) > info.GetSize()-n {
				return nil, n, fmt.Errorf("the server sent more than the %d bytes it announced", info.GetSize())
			}
			if _, err := w.Write(part.Chunk); err != nil {
				return nil, n, fmt.Errorf("writing the snapshot: %w", err)
			}
			n += int64(len(part.Chunk))
			prog.set(n)
		default:
			return nil, n, errors.New("the server sent a snapshot message of an unknown kind")
		}
	}
	switch {
	case info == nil:
		return nil, 0, errors.New("the server ended the snapshot stream without a snapshot")
	case n != info.GetSize():
		return nil, n, fmt.Errorf("the snapshot stream ended after %d of the %d bytes announced", n, info.GetSize())
	}
	return info, n, nil
}

// partFile is a download in progress, written under name.part.
type partFile struct {
	f         *os.File
	name      string // the final name
	committed bool
}

// createPart creates (or truncates) name.part. A snapshot holds every secret
// of the region, so only the owner may read it.
func createPart(name string) (*partFile, error) {
	f, err := os.OpenFile(name+".part", os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, err
	}
	return &partFile{f: f, name: name}, nil
}

// commit syncs the file and renames it to its final name, replacing any file
// there, then syncs the directory so that the rename survives a crash.
func (p *partFile) commit() error {
	if err := p.f.Sync(); err != nil {
		return err
	}
	if err := p.f.Close(); err != nil {
		return err
	}
	if err := os.Rename(p.f.Name(), p.name); err != nil {
		return err
	}
	p.committed = true
	// Some file systems cannot sync a directory; the file itself is whole
	// and synced either way, so that is not worth failing for.
	if dir, err := os.Open(filepath.Dir(p.name)); err == nil {
		_ = dir.Sync()
		dir.Close()
	}
	return nil
}

// discard removes the partial file unless commit succeeded.
func (p *partFile) discard() {
	if p.committed {
		return
	}
	p.f.Close()
	os.Remove(p.f.Name())
}

// runSnapshotRestore uploads a snapshot, which replaces the region's state.
// There is no prompt, so that scripts can restore; --yes is the confirmation.
func runSnapshotRestore(l *leaf, args []string) error {
	var yes bool
	l.fs.BoolVar(&yes, "yes", false, "confirm that the region's whole state is to be replaced")
	l.fs.BoolVar(&yes, "y", false, "shorthand for --yes")
	forceProgress := l.fs.Bool("progress", false, "show progress on stderr even when it is not a terminal")
	pos, err := l.parse(args, "FILE")
	if err != nil {
		return err
	}
	if !yes {
		return l.usageErrorf("restore replaces the region's whole state, every secret on every node, with the snapshot's; give --yes to go ahead")
	}
	name := pos[0]
	if name == "-" {
		return l.usageErrorf("FILE must be a file, not stdin: the upload starts with the snapshot's size")
	}
	f, err := os.Open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	fi, err := f.Stat()
	switch {
	case err != nil:
		return err
	case !fi.Mode().IsRegular():
		return fmt.Errorf("%s is not a regular file", name)
	case fi.Size() == 0:
		return fmt.Errorf("%s is empty, not a snapshot", name)
	}
	var prog *progress
	if *forceProgress || isTerminal(l.inv.stderr) {
		prog = newProgress(l.inv.stderr, "restoring snapshot")
	}
	resp, err := uploadSnapshot(l, f, fi.Size(), prog)
	prog.end()
	if err != nil {
		return err
	}
	return l.printLine(resp, fmt.Sprintf("restored snapshot; region state replaced at index %d", resp.GetIndex()))
}

// uploadSnapshot sends size, then exactly size bytes of r in chunks. If r
// does not hold exactly size bytes (the file changed under us), the RPC is
// cancelled rather than closed, so the server restores nothing.
func uploadSnapshot(l *leaf, r io.Reader, size int64, prog *progress) (*cofferv1.RestoreSnapshotResponse, error) {
	conn, err := l.inv.connect()
	if err != nil {
		return nil, err
	}
	ctx, watch := watchStalls(l.inv.ctx, l.inv.opts.timeout)
	defer watch.stop() // cancels the RPC unless CloseAndRecv has finished it
	stream, err := cofferv1.NewAdminServiceClient(conn).RestoreSnapshot(ctx)
	if err != nil {
		return nil, watch.explain(err)
	}
	send := func(m *cofferv1.RestoreSnapshotRequest) error {
		err := stream.Send(m)
		if errors.Is(err, io.EOF) {
			// The server ended the RPC; its status says why.
			if _, err = stream.CloseAndRecv(); err == nil {
				err = errors.New("the server ended the upload before the snapshot was sent")
			}
		}
		if err != nil {
			return watch.explain(err)
		}
		watch.progress()
		return nil
	}
	if err := send(&cofferv1.RestoreSnapshotRequest{Part: &cofferv1.RestoreSnapshotRequest_Size{Size: size}}); err != nil {
		return nil, err
	}
	prog.start(size)
	for sent := int64(0); sent < size; {
		// A new buffer each time: gRPC may still hold the last message.
		chunk := make([]byte, min(snapshotChunk, size-sent))
		if _, err := io.ReadFull(r, chunk); err != nil {
			return nil, fmt.Errorf("reading the snapshot after %d of %d bytes: %w (did the file change?)", sent, size, err)
		}
		if err := send(&cofferv1.RestoreSnapshotRequest{Part: &cofferv1.RestoreSnapshotRequest_Chunk{Chunk: chunk}}); err != nil {
			return nil, err
		}
		sent += int64(len(chunk))
		prog.set(sent)
	}
	if n, _ := r.Read(make([]byte, 1)); n > 0 {
		return nil, fmt.Errorf("the snapshot grew past %d bytes while it was sent; upload cancelled", size)
	}
	resp, err := stream.CloseAndRecv()
	if err != nil {
		return nil, watch.explain(err)
	}
	return resp, nil
}
