// Package state locates cordon's directories and writes its files safely:
// atomically, under a file lock, with owner-only permissions where they hold
// key material.
package state

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
)

// Dirs are the directories cordon keeps its files in. With CORDON_HOME set
// they are all that one directory (Runtime is its "run" subdirectory);
// otherwise they follow the XDG base directory specification.
type Dirs struct {
	Config  string // human-edited files: providers, policy
	Data    string // key material: the CA, the secret store and its key
	State   string // the request log and sandboxes' writable layers
	Runtime string // sockets and other files that live as long as a process
}

// Resolve reads CORDON_HOME and the XDG variables from the environment.
// It creates nothing; see Ensure.
func Resolve() (Dirs, error) {
	return resolve(os.Getenv)
}

func resolve(getenv func(string) string) (Dirs, error) {
	if home := getenv("CORDON_HOME"); home != "" {
		abs, err := filepath.Abs(home)
		if err != nil {
			return Dirs{}, fmt.Errorf("CORDON_HOME: %w", err)
		}
		return Dirs{Config: abs, Data: abs, State: abs, Runtime: filepath.Join(abs, "run")}, nil
	}

	userHome := getenv("HOME")
	xdg := func(variable, fallback string) (string, error) {
		// The XDG specification says relative paths are invalid and must be
		// ignored.
		if dir := getenv(variable); filepath.IsAbs(dir) {
			return filepath.Join(dir, "cordon"), nil
		}
		if !filepath.IsAbs(userHome) {
			return "", errors.New("cannot locate cordon's state: set CORDON_HOME or HOME")
		}
		return filepath.Join(userHome, fallback, "cordon"), nil
	}

	var d Dirs
	var err error
	if d.Config, err = xdg("XDG_CONFIG_HOME", ".config"); err != nil {
		return Dirs{}, err
	}
	if d.Data, err = xdg("XDG_DATA_HOME", filepath.Join(".local", "share")); err != nil {
		return Dirs{}, err
	}
	if d.State, err = xdg("XDG_STATE_HOME", filepath.Join(".local", "state")); err != nil {
		return Dirs{}, err
	}
	if dir := getenv("XDG_RUNTIME_DIR"); filepath.IsAbs(dir) {
		d.Runtime = filepath.Join(dir, "cordon")
	} else {
		d.Runtime = filepath.Join(d.State, "run")
	}
	return d, nil
}

// Ensure creates the directories with mode 0700, and tightens the mode of
// any that already exist with looser permissions.
func (d Dirs) Ensure() error {
	for _, dir := range []string{d.Config, d.Data, d.State, d.Runtime} {
		if err := EnsureDir(dir); err != nil {
			return err
		}
	}
	return nil
}

// EnsureDir creates dir and its parents if needed and makes dir itself
// owner-only (0700).
func EnsureDir(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	info, err := os.Stat(dir)
	if err != nil {
		return err
	}
	if !info.IsDir() {
		return fmt.Errorf("%s is not a directory", dir)
	}
	if info.Mode().Perm() != 0o700 {
		if err := os.Chmod(dir, 0o700); err != nil {
			return fmt.Errorf("restricting %s to its owner: %w", dir, err)
		}
	}
	return nil
}
