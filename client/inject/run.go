package inject

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"text/template"
	"time"

	"github.com/cofferhq/coffer/client"
)

// Config is one `coffer exec`.
type Config struct {
	Env       []EnvRef
	Templates []Template
	Command   []string
	// AllowMissing sets a variable whose JSON key is missing to "" instead
	// of failing.
	AllowMissing bool
	// RestartOnChange restarts the command (or, with SignalOnly, sends it
	// Signal after rewriting the templates) when an injected value changes.
	RestartOnChange bool
	SignalOnly      bool
	// Signal stops the command for a restart (and is what SignalOnly
	// sends); Grace is how long it has before SIGKILL. Zero: SIGTERM, 10s.
	Signal syscall.Signal
	Grace  time.Duration
	Stdin  io.Reader
	Stdout io.Writer
	Stderr io.Writer
	Logger *slog.Logger
}

// Getter reads a secret (client.Client does).
type Getter interface {
	GetSecretValue(ctx context.Context, id string, opts ...client.GetOption) (*client.Secret, error)
}

// Resolve reads r's value.
func Resolve(ctx context.Context, g Getter, r Ref) (string, error) {
	var opts []client.GetOption
	if r.VersionID != "" {
		opts = append(opts, client.VersionID(r.VersionID))
	}
	if r.Stage != "" {
		opts = append(opts, client.VersionStage(r.Stage))
	}
	s, err := g.GetSecretValue(ctx, r.SecretID, opts...)
	if err != nil {
		return "", fmt.Errorf("secret %s: %w", r.SecretID, err)
	}
	text := s.String
	if s.Binary != nil {
		text = string(s.Binary)
	}
	if r.JSONKey == "" {
		return text, nil
	}
	v, err := pick(text, r.JSONKey)
	if err != nil {
		return "", fmt.Errorf("secret %s: %w", r.SecretID, err)
	}
	return v, nil
}

// rendered is what one resolution produced: the variables and files.
type rendered struct {
	env   map[string]string
	files map[string][]byte
}

func (r rendered) equal(o rendered) bool {
	return maps.Equal(r.env, o.env) && maps.EqualFunc(r.files, o.files, bytes.Equal)
}

func (cfg *Config) resolve(ctx context.Context, g Getter) (rendered, error) {
	out := rendered{env: map[string]string{}, files: map[string][]byte{}}
	for _, e := range cfg.Env {
		v, err := Resolve(ctx, g, e.Ref)
		if errors.Is(err, ErrMissingKey) && cfg.AllowMissing {
			v, err = "", nil
		}
		if err != nil {
			return out, fmt.Errorf("%s: %w", e.Name, err)
		}
		out.env[e.Name] = v
	}
	for _, t := range cfg.Templates {
		src, err := os.ReadFile(t.In)
		if err != nil {
			return out, fmt.Errorf("template %s: %w", t.In, err)
		}
		tpl, err := template.New(filepath.Base(t.In)).Option("missingkey=error").Funcs(template.FuncMap{
			// secret "prod/db:password" reads a reference as --env does.
			"secret": func(ref string) (string, error) {
				r, err := ParseRef(ref)
				if err != nil {
					return "", err
				}
				return Resolve(ctx, g, r)
			},
		}).Parse(string(src))
		if err != nil {
			return out, fmt.Errorf("template %s: %w", t.In, err)
		}
		var buf bytes.Buffer
		if err := tpl.Execute(&buf, out.env); err != nil {
			return out, fmt.Errorf("template %s: %w", t.In, err)
		}
		out.files[t.Out] = buf.Bytes()
	}
	return out, nil
}

// writeFiles writes each rendered file atomically: a temporary file in the
// same directory with the mode, synced, then renamed over the target.
func (cfg *Config) writeFiles(r rendered) error {
	for _, t := range cfg.Templates {
		if err := writeAtomic(t.Out, r.files[t.Out], t.Mode); err != nil {
			return err
		}
	}
	return nil
}

func writeAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	err = f.Chmod(mode)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// forwarded are the signals passed on to the command.
var forwarded = []os.Signal{syscall.SIGINT, syscall.SIGTERM, syscall.SIGHUP, syscall.SIGQUIT, syscall.SIGUSR1, syscall.SIGUSR2}

// Run resolves everything (failing before starting anything on a missing
// secret or key), runs the command and returns its exit code (128+N when a
// signal N ended it). changes, when RestartOnChange is set, is poked after
// the client learns of a change; Run then resolves again and, if any
// injected value differs, restarts or signals the command.
func Run(ctx context.Context, g Getter, changes <-chan struct{}, cfg Config) (int, error) {
	if len(cfg.Command) == 0 {
		return 0, errors.New("no command to run")
	}
	if cfg.Signal == 0 {
		cfg.Signal = syscall.SIGTERM
	}
	if cfg.Grace <= 0 {
		cfg.Grace = 10 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	cur, err := cfg.resolve(ctx, g)
	if err != nil {
		return 0, err
	}
	if err := cfg.writeFiles(cur); err != nil {
		return 0, err
	}
	sigs := make(chan os.Signal, 8)
	signal.Notify(sigs, forwarded...)
	defer signal.Stop(sigs)
	if !cfg.RestartOnChange {
		changes = nil
	}
	for {
		cmd, exited, err := cfg.start(cur)
		if err != nil {
			return 0, err
		}
	wait:
		for {
			select {
			case <-exited:
				return exitCode(cmd), nil
			case s := <-sigs:
				_ = cmd.Process.Signal(s)
			case <-changes:
				next, err := cfg.resolve(ctx, g)
				if err != nil {
					cfg.Logger.Warn("coffer exec: re-reading the injected secrets failed; the command keeps the old values", "err", err)
					continue
				}
				if next.equal(cur) {
					continue
				}
				if err := cfg.writeFiles(next); err != nil {
					cfg.Logger.Warn("coffer exec: rewriting a template failed", "err", err)
					continue
				}
				cur = next
				if cfg.SignalOnly {
					cfg.Logger.Info("coffer exec: an injected secret changed; signalling the command", "signal", cfg.Signal)
					_ = cmd.Process.Signal(cfg.Signal)
					continue
				}
				cfg.Logger.Info("coffer exec: an injected secret changed; restarting the command", "signal", cfg.Signal, "grace", cfg.Grace)
				_ = cmd.Process.Signal(cfg.Signal)
				select {
				case <-exited:
				case <-time.After(cfg.Grace):
					_ = cmd.Process.Kill()
					<-exited
				}
				break wait
			case <-ctx.Done():
				_ = cmd.Process.Signal(cfg.Signal)
				select {
				case <-exited:
				case <-time.After(cfg.Grace):
					_ = cmd.Process.Kill()
					<-exited
				}
				return exitCode(cmd), nil
			}
		}
	}
}

func (cfg *Config) start(r rendered) (*exec.Cmd, <-chan struct{}, error) {
	cmd := exec.Command(cfg.Command[0], cfg.Command[1:]...)
	cmd.Env = os.Environ()
	for _, e := range cfg.Env {
		cmd.Env = append(cmd.Env, e.Name+"="+r.env[e.Name])
	}
	cmd.Stdin, cmd.Stdout, cmd.Stderr = cfg.Stdin, cfg.Stdout, cfg.Stderr
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("start %s: %w", cfg.Command[0], err)
	}
	exited := make(chan struct{})
	go func() {
		_ = cmd.Wait()
		close(exited)
	}()
	return cmd, exited, nil
}

func exitCode(cmd *exec.Cmd) int {
	st := cmd.ProcessState
	if st == nil {
		return 1
	}
	if ws, ok := st.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return st.ExitCode()
}
