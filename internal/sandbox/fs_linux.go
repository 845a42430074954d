package sandbox

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
)

// systemBundlePaths are where distributions keep the trusted roots; the
// sandbox's bundle is mounted over those that exist.
var systemBundlePaths = []string{
	"/etc/ssl/certs/ca-certificates.crt",
	"/etc/pki/tls/certs/ca-bundle.crt",
	"/etc/ssl/ca-bundle.pem",
	"/etc/pki/tls/cacert.pem",
	"/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
	"/etc/ssl/cert.pem",
}

// privateTops are top-level directories that get a fresh filesystem
// instead of the host's: the kernel's views, scratch space, and the homes
// of the host's users.
var privateTops = map[string]bool{
	"proc": true, "sys": true, "dev": true, "tmp": true, "run": true,
	"home": true, "root": true, "lost+found": true,
}

// buildFilesystem assembles the sandbox's root in a staging directory and
// makes it the root: the host's top-level directories under a
// copy-on-write layer, fresh /proc, /dev, /tmp and /run, the sandbox's
// own home, the workspaces, and the CA bundle over the system's.
//
// private, when not nil, delivers the host's private files to cover (see
// searchPrivate).
func buildFilesystem(spec Spec, private <-chan []privateEntry) error {
	// Nothing mounted here may propagate back to the host.
	if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
		return fmt.Errorf("making mounts private: %w", err)
	}
	root := filepath.Join(spec.Dir, "root")
	if err := os.MkdirAll(root, 0o700); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", root, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "mode=0755"); err != nil {
		return fmt.Errorf("mounting the sandbox root: %w", err)
	}

	if err := mountTops(spec, root); err != nil {
		return err
	}
	if err := mountKernelViews(root); err != nil {
		return err
	}
	for _, dir := range []string{"tmp", "run"} {
		mode := "mode=1777"
		if dir == "run" {
			mode = "mode=0755"
		}
		if err := mountFresh(filepath.Join(root, dir), mode); err != nil {
			return err
		}
	}
	for _, dir := range []string{"home", "root"} {
		if err := mountFresh(filepath.Join(root, dir), "mode=0755"); err != nil {
			return err
		}
	}

	if private != nil {
		if err := coverPrivate(spec, root, <-private); err != nil {
			return err
		}
	}

	// The home, then the workspaces, which may lie inside it or inside a
	// covered directory.
	home := filepath.Join(spec.Dir, "home")
	if err := os.MkdirAll(home, 0o700); err != nil {
		return err
	}
	if err := bindInto(root, home, spec.HomePath, false); err != nil {
		return fmt.Errorf("mounting the home directory: %w", err)
	}
	for _, w := range spec.Workspaces {
		if err := bindInto(root, w.Source, w.Target, w.ReadOnly); err != nil {
			return fmt.Errorf("mounting workspace %s: %w", w.Source, err)
		}
	}
	for _, h := range spec.Hide {
		if err := hide(root, h); err != nil {
			return fmt.Errorf("hiding %s: %w", h, err)
		}
	}
	if err := installCA(spec, root); err != nil {
		return err
	}
	if err := installResolver(root); err != nil {
		return err
	}
	return pivot(root)
}

// mountTops shows each of the host's top-level directories under the
// sandbox's copy-on-write layer, one overlay each: the kernel refuses an
// upper directory inside its own lower tree, which one overlay of / would
// need. A directory that contains the layer itself is shown read-only
// instead.
func mountTops(spec Spec, root string) error {
	entries, err := os.ReadDir("/")
	if err != nil {
		return err
	}
	layer := filepath.Join(spec.Dir, "layer")
	var overlays []overlay
	for _, e := range entries {
		name := e.Name()
		target := filepath.Join(root, name)
		if privateTops[name] {
			if err := os.Mkdir(target, 0o755); err != nil && !errors.Is(err, os.ErrExist) {
				return err
			}
			continue
		}
		switch {
		case e.Type()&os.ModeSymlink != 0:
			dest, err := os.Readlink("/" + name)
			if err != nil {
				return err
			}
			if err := os.Symlink(dest, target); err != nil {
				return err
			}
			continue
		case !e.IsDir():
			continue // files at the top of / are not carried over
		}

		if err := os.Mkdir(target, 0o755); err != nil {
			return err
		}
		lower := "/" + name
		if within(layer, lower) || within(spec.RuntimeDir, lower) {
			if err := bindReadOnly(lower, target); err != nil {
				return fmt.Errorf("mounting %s: %w", lower, err)
			}
			continue
		}
		upper, work := layerDirs(spec.Dir, name)
		if err := os.MkdirAll(upper, 0o755); err != nil {
			return err
		}
		if err := os.MkdirAll(work, 0o700); err != nil {
			return err
		}
		overlays = append(overlays, overlay{lower: lower, upper: upper, work: work, target: target})
	}

	// The overlays are mounted side by side: most of the time a mount
	// takes goes to setting up its layers, which the kernel does before
	// it takes the lock on the mount table. Their targets are distinct
	// and none is inside another.
	errs := make([]error, len(overlays))
	var wg sync.WaitGroup
	for i, o := range overlays {
		wg.Go(func() { errs[i] = o.mount() })
	}
	wg.Wait()
	return errors.Join(errs...)
}

// overlay is one of the host's top-level directories under the sandbox's
// copy-on-write layer.
type overlay struct {
	lower, upper, work, target string
}

func (o overlay) mount() error {
	opts := "lowerdir=" + escapeOverlay(o.lower) + ",upperdir=" + escapeOverlay(o.upper) +
		",workdir=" + escapeOverlay(o.work)
	if err := unix.Mount("overlay", o.target, "overlay", 0, opts); err != nil {
		// Some filesystems cannot be an overlay's lower layer; read-only
		// is the safe fallback.
		if err := bindReadOnly(o.lower, o.target); err != nil {
			return fmt.Errorf("mounting %s: %w", o.lower, err)
		}
	}
	return nil
}

// within reports whether path lies inside dir (or is dir).
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, "../")
}

// escapeOverlay escapes the characters that separate overlay options.
func escapeOverlay(path string) string {
	return strings.NewReplacer(`\`, `\\`, ",", `\,`, ":", `\:`).Replace(path)
}

func mountFresh(target, mode string) error {
	if err := os.MkdirAll(target, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("tmpfs", target, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, mode); err != nil {
		return fmt.Errorf("mounting %s: %w", target, err)
	}
	return nil
}

// mountKernelViews mounts /proc for the sandbox's PID namespace, /sys, and
// a /dev with only the harmless devices and a private pty instance.
func mountKernelViews(root string) error {
	proc := filepath.Join(root, "proc")
	if err := unix.Mount("proc", proc, "proc", unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		return fmt.Errorf("mounting /proc: %w", err)
	}
	// The kernel's settings under /proc/sys are the host's own (bar the
	// network's), and writing them is checked against the host's root
	// user, which the sandbox's root is when cordon runs as root: they,
	// and the other host-wide controls, are read-only inside.
	for _, name := range []string{"sys", "sysrq-trigger", "irq", "bus", "fs"} {
		target := filepath.Join(proc, name)
		if _, err := os.Lstat(target); err != nil {
			continue
		}
		if err := bindReadOnly(target, target); err != nil {
			return fmt.Errorf("making /proc/%s read-only: %w", name, err)
		}
	}
	sys := filepath.Join(root, "sys")
	if err := unix.Mount("sysfs", sys, "sysfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV|unix.MS_NOEXEC, ""); err != nil {
		// Without a sysfs of its own (no new network namespace rights),
		// the sandbox goes without /sys rather than see the host's.
		_ = err
	}

	dev := filepath.Join(root, "dev")
	if err := unix.Mount("tmpfs", dev, "tmpfs", unix.MS_NOSUID|unix.MS_NOEXEC, "mode=0755"); err != nil {
		return fmt.Errorf("mounting /dev: %w", err)
	}
	for _, name := range []string{"null", "zero", "full", "random", "urandom", "tty"} {
		target := filepath.Join(dev, name)
		f, err := os.OpenFile(target, os.O_CREATE|os.O_WRONLY, 0o666)
		if err != nil {
			return err
		}
		f.Close()
		if err := unix.Mount("/dev/"+name, target, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("mounting /dev/%s: %w", name, err)
		}
	}
	pts := filepath.Join(dev, "pts")
	if err := os.Mkdir(pts, 0o755); err != nil {
		return err
	}
	if err := unix.Mount("devpts", pts, "devpts", unix.MS_NOSUID|unix.MS_NOEXEC,
		"newinstance,ptmxmode=0666,mode=0620"); err != nil {
		return fmt.Errorf("mounting /dev/pts: %w", err)
	}
	if err := os.Symlink("pts/ptmx", filepath.Join(dev, "ptmx")); err != nil {
		return err
	}
	if err := mountFresh(filepath.Join(dev, "shm"), "mode=1777"); err != nil {
		return err
	}
	for name, dest := range map[string]string{
		"fd": "/proc/self/fd", "stdin": "/proc/self/fd/0", "stdout": "/proc/self/fd/1", "stderr": "/proc/self/fd/2",
	} {
		if err := os.Symlink(dest, filepath.Join(dev, name)); err != nil {
			return err
		}
	}
	return nil
}

// bindInto mounts a host directory at target inside root, creating the
// mount point.
func bindInto(root, source, target string, readOnly bool) error {
	inside := filepath.Join(root, target)
	if err := os.MkdirAll(inside, 0o755); err != nil {
		return err
	}
	if readOnly {
		return bindReadOnly(source, inside)
	}
	return unix.Mount(source, inside, "", unix.MS_BIND|unix.MS_REC, "")
}

func bindReadOnly(source, target string) error {
	if err := unix.Mount(source, target, "", unix.MS_BIND|unix.MS_REC, ""); err != nil {
		return err
	}
	return unix.Mount("", target, "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_REC, "")
}

// hide covers a host path with an empty, read-only directory, if it is
// visible inside at all.
func hide(root, path string) error {
	inside := filepath.Join(root, path)
	info, err := os.Stat(inside)
	if err != nil {
		return nil // not visible: nothing to hide
	}
	if !info.IsDir() {
		return unix.Mount("/dev/null", inside, "", unix.MS_BIND, "")
	}
	return unix.Mount("tmpfs", inside, "tmpfs", unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, "mode=0000,size=4k")
}

// installCA puts cordon's CA bundle in /run/cordon and over the system
// bundle paths that exist, so every TLS client inside trusts the proxy.
func installCA(spec Spec, root string) error {
	dir := filepath.Join(root, "run", "cordon")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	for src, dst := range map[string]string{spec.CABundle: InsideCABundle, spec.CACert: InsideCACert} {
		data, err := os.ReadFile(src)
		if err != nil {
			return fmt.Errorf("reading the CA bundle: %w", err)
		}
		if err := os.WriteFile(filepath.Join(root, dst), data, 0o444); err != nil {
			return err
		}
	}
	for _, p := range systemBundlePaths {
		target := filepath.Join(root, p)
		if info, err := os.Stat(target); err != nil || !info.Mode().IsRegular() {
			continue
		}
		if err := unix.Mount(filepath.Join(root, InsideCABundle), target, "", unix.MS_BIND, ""); err != nil {
			return fmt.Errorf("mounting the CA bundle over %s: %w", p, err)
		}
	}
	return nil
}

// installResolver points the sandbox's resolver at the DNS stub. The file
// is replaced in the copy-on-write layer, even when the host's is a
// symbolic link into a /run the sandbox does not have.
func installResolver(root string) error {
	path := filepath.Join(root, "etc", "resolv.conf")
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("replacing /etc/resolv.conf: %w", err)
	}
	content := "# cordon: names resolve through the sandbox's DNS stub\nnameserver 127.0.0.1\n"
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		return fmt.Errorf("replacing /etc/resolv.conf: %w", err)
	}
	return nil
}

// pivot makes root the root of the mount namespace and detaches the host's.
func pivot(root string) error {
	old := filepath.Join(root, ".oldroot")
	if err := os.Mkdir(old, 0o700); err != nil {
		return err
	}
	if err := unix.PivotRoot(root, old); err != nil {
		return fmt.Errorf("pivot_root: %w", err)
	}
	if err := unix.Chdir("/"); err != nil {
		return err
	}
	if err := unix.Unmount("/.oldroot", unix.MNT_DETACH); err != nil {
		return fmt.Errorf("detaching the host's root: %w", err)
	}
	if err := os.Remove("/.oldroot"); err != nil {
		return err
	}
	// The root itself is only mount points: make it read-only.
	return unix.Mount("", "/", "", unix.MS_BIND|unix.MS_REMOUNT|unix.MS_RDONLY, "")
}
