package sandbox

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// initConfig is what the host hands init on descriptor 3.
type initConfig struct {
	Spec Spec     `json:"spec"`
	Env  []string `json:"env"` // unused by init itself; kept for exec defaults
}

// Descriptors init is started with, after stdin, stdout and stderr.
const (
	fdConfig   = 3 // read: the JSON initConfig
	fdStatus   = 4 // write: "ok\n" once ready, or the reason it failed
	fdLifeline = 5 // read: EOF when the host process is gone
)

// RunInit runs the sandbox's init and does not return. It is called when
// cordon is started with InitArg, inside the new namespaces.
func RunInit() {
	status := os.NewFile(fdStatus, "status")
	fail := func(err error) {
		fmt.Fprintf(status, "%v\n", err)
		os.Exit(1)
	}

	var cfg initConfig
	configFile := os.NewFile(fdConfig, "config")
	if err := json.NewDecoder(io.LimitReader(configFile, 1<<20)).Decode(&cfg); err != nil {
		fail(fmt.Errorf("reading the sandbox configuration: %w", err))
	}
	configFile.Close()

	// Signals from inside the sandbox must not stop init: as PID 1 it
	// would take every process with it. They are caught and dropped
	// rather than ignored, because an ignored signal stays ignored in the
	// programs init starts, and a caught one does not.
	discard := make(chan os.Signal, 16)
	// That includes those the Go runtime would die of when they come
	// from kill(2) rather than from a fault.
	signal.Notify(discard, syscall.SIGTERM, syscall.SIGINT, syscall.SIGHUP, syscall.SIGQUIT,
		syscall.SIGUSR1, syscall.SIGUSR2, syscall.SIGTTIN, syscall.SIGTTOU,
		syscall.SIGABRT, syscall.SIGILL, syscall.SIGTRAP, syscall.SIGSYS, syscall.SIGSTKFLT,
		syscall.SIGSEGV, syscall.SIGBUS, syscall.SIGFPE, syscall.SIGPIPE, syscall.SIGXCPU, syscall.SIGXFSZ)
	go func() {
		for range discard {
		}
	}()

	in, err := setUp(cfg.Spec)
	if err != nil {
		fail(err)
	}

	// Nothing inside may read init's memory or descriptors, which lead
	// to the host's runtime directory.
	if err := unix.Prctl(unix.PR_SET_DUMPABLE, 0, 0, 0, 0); err != nil {
		fail(fmt.Errorf("making init undumpable: %w", err))
	}

	r, err := newReaper()
	if err != nil {
		fail(err)
	}
	go r.run()
	go in.forward()
	go in.serveControl(r)
	go func() {
		// The host process holds the other end; when it is gone, so is
		// the sandbox.
		lifeline := os.NewFile(fdLifeline, "lifeline")
		io.Copy(io.Discard, lifeline)
		shutdown()
	}()

	fmt.Fprintln(status, "ok")
	status.Close()
	select {}
}

// shutdown ends the sandbox: as PID 1, init's exit kills every process in
// its PID namespace.
func shutdown() {
	syscall.Kill(-1, syscall.SIGKILL)
	os.Exit(0)
}

// inside is init's state once the sandbox is set up.
type inside struct {
	proxySocket *os.File // the proxy's socket on the host (O_PATH), opened before pivot_root
	control     *net.UnixListener
	proxyAddr   string
	forwarder   net.Listener
	names       *nameTable
	bridges     map[int]string // port → host of loopback providers
}

// setUp builds the sandbox from inside its new namespaces: the control
// socket on the host, the filesystem, loopback, host name and forwarder.
func setUp(spec Spec) (*inside, error) {
	private := searchPrivate()
	runtimeDir, err := os.OpenFile(spec.RuntimeDir, unix.O_PATH|unix.O_DIRECTORY, 0)
	if err != nil {
		return nil, fmt.Errorf("opening the runtime directory: %w", err)
	}
	// Paths through the open descriptor keep working after pivot_root,
	// and stay short whatever the length of the runtime directory's path.
	viaFD := fmt.Sprintf("/proc/self/fd/%d/", runtimeDir.Fd())
	control, err := net.ListenUnix("unixpacket", &net.UnixAddr{Name: viaFD + ControlSocket, Net: "unixpacket"})
	if err != nil {
		return nil, fmt.Errorf("listening on the control socket: %w", err)
	}
	control.SetUnlinkOnClose(false)

	// The proxy is reached through a descriptor of its socket alone, not
	// of the directory: a directory's descriptor leads, by "..", to the
	// whole of the host's filesystem.
	proxySocket, err := os.OpenFile(viaFD+ProxySocket, unix.O_PATH, 0)
	if err != nil {
		return nil, fmt.Errorf("opening the proxy's socket: %w", err)
	}
	runtimeDir.Close()

	// Programs run without capabilities over the sandbox's network (see
	// reaper.start); they may still serve on any port of its loopback.
	// The setting is the network namespace's own, so it is written before
	// /proc/sys turns read-only.
	if err := os.WriteFile("/proc/sys/net/ipv4/ip_unprivileged_port_start", []byte("0"), 0); err != nil {
		return nil, fmt.Errorf("opening low ports to programs: %w", err)
	}

	if err := buildFilesystem(spec, private); err != nil {
		return nil, err
	}
	if err := loopbackUp(); err != nil {
		return nil, err
	}
	if err := unix.Sethostname([]byte(spec.Name)); err != nil {
		return nil, fmt.Errorf("setting the host name: %w", err)
	}
	fwd, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", ProxyPort))
	if err != nil {
		return nil, fmt.Errorf("starting the forwarder: %w", err)
	}
	in := &inside{proxySocket: proxySocket, control: control, forwarder: fwd,
		proxyAddr: fmt.Sprintf("/proc/self/fd/%d", proxySocket.Fd())}
	if err := in.startCapture(spec.Bridges); err != nil {
		return nil, err
	}
	return in, nil
}

// loopbackUp brings up the network namespace's only interface.
func loopbackUp() error {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("bringing up loopback: %w", err)
	}
	defer unix.Close(fd)
	ifr, err := unix.NewIfreq("lo")
	if err != nil {
		return err
	}
	if err := unix.IoctlIfreq(fd, unix.SIOCGIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bringing up loopback: %w", err)
	}
	ifr.SetUint16(ifr.Uint16() | unix.IFF_UP)
	if err := unix.IoctlIfreq(fd, unix.SIOCSIFFLAGS, ifr); err != nil {
		return fmt.Errorf("bringing up loopback: %w", err)
	}
	return nil
}

// forward carries each connection to 127.0.0.1:3128 to the proxy's socket
// on the host: the sandbox's only way out.
func (in *inside) forward() {
	for {
		c, err := in.forwarder.Accept()
		if err != nil {
			continue
		}
		go func() {
			defer c.Close()
			up, err := net.Dial("unix", in.proxyAddr)
			if err != nil {
				return
			}
			defer up.Close()
			spliceConns(c, up)
		}()
	}
}

// spliceConns copies both ways, passing on half-closes.
func spliceConns(a, b net.Conn) {
	var wg sync.WaitGroup
	wg.Go(func() {
		io.Copy(b, a)
		closeWrite(b)
	})
	io.Copy(a, b)
	closeWrite(a)
	wg.Wait()
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
		return
	}
	c.Close()
}

// serveControl starts programs on request.
func (in *inside) serveControl(r *reaper) {
	for {
		uc, err := in.control.AcceptUnix()
		if err != nil {
			continue
		}
		go serveSpawn(&conn{uc: uc}, r)
	}
}

// serveSpawn handles one control connection: start the command, relay
// signals to its process group, report its exit.
func serveSpawn(c *conn, r *reaper) {
	defer c.uc.Close()
	m, files, err := c.receive()
	if err != nil {
		return
	}
	defer closeAll(files)
	if m.Spawn == nil || len(m.Spawn.Args) == 0 {
		c.send(message{Error: "expected a spawn request"})
		return
	}
	// A terminal is made here, in the sandbox's own /dev/pts, so that
	// programs inside find it by name; the host gets the other end.
	var master *os.File
	switch {
	case m.Spawn.TTY && len(files) == 0:
		var terminal *os.File
		master, terminal, err = openPTY("/dev/ptmx", "/dev/pts")
		if err != nil {
			c.send(message{Error: err.Error()})
			return
		}
		defer master.Close()
		if m.Spawn.Rows > 0 && m.Spawn.Cols > 0 {
			unix.IoctlSetWinsize(int(master.Fd()), unix.TIOCSWINSZ,
				&unix.Winsize{Row: m.Spawn.Rows, Col: m.Spawn.Cols})
		}
		files = []*os.File{terminal, terminal, terminal}
	case !m.Spawn.TTY && len(files) == 3:
	default:
		c.send(message{Error: "a spawn request carries three descriptors, or asks for a terminal"})
		return
	}

	exited, pid, err := r.start(m.Spawn, files)
	closeAll(files)
	if err != nil {
		c.send(message{Error: err.Error()})
		return
	}
	var reply []*os.File
	if master != nil {
		reply = append(reply, master)
	}
	if err := c.send(message{PID: pid}, reply...); err != nil {
		syscall.Kill(-pid, syscall.SIGHUP)
	}

	// Relay signals until the process exits; a host that goes away hangs
	// the process up, as closing a terminal would.
	go func() {
		for {
			m, files, err := c.receive()
			closeAll(files)
			if err != nil {
				syscall.Kill(-pid, syscall.SIGHUP)
				return
			}
			if m.Signal > 0 && m.Signal < 65 {
				syscall.Kill(-pid, syscall.Signal(m.Signal))
			}
		}
	}()
	code := <-exited
	c.send(message{Exit: &code})
}

// reaper collects the exit status of every child of init, its own and the
// orphans that the kernel hands to it as PID 1.
type reaper struct {
	uids, gids []syscall.SysProcIDMap // the sandbox's IDs, mapped to themselves
	setgroups  bool

	mu      sync.Mutex
	waiting map[int]chan int // started processes not yet reaped
	early   map[int]int      // reaped before start registered them
}

func newReaper() (*reaper, error) {
	r := &reaper{waiting: map[int]chan int{}, early: map[int]int{}}
	var err error
	if r.uids, err = identityMap("/proc/self/uid_map"); err != nil {
		return nil, err
	}
	if r.gids, err = identityMap("/proc/self/gid_map"); err != nil {
		return nil, err
	}
	sg, err := os.ReadFile("/proc/self/setgroups")
	r.setgroups = err == nil && strings.TrimSpace(string(sg)) == "allow"
	return r, nil
}

// identityMap maps every ID of the sandbox's user namespace to itself in
// a namespace nested in it.
func identityMap(path string) ([]syscall.SysProcIDMap, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var out []syscall.SysProcIDMap
	for _, line := range strings.Split(strings.TrimSpace(string(data)), "\n") {
		var inside, outside, size int
		if _, err := fmt.Sscan(line, &inside, &outside, &size); err != nil {
			return nil, fmt.Errorf("reading %s: %w", path, err)
		}
		out = append(out, syscall.SysProcIDMap{ContainerID: inside, HostID: inside, Size: size})
	}
	return out, nil
}

func (r *reaper) run() {
	sigs := make(chan os.Signal, 16)
	signal.Notify(sigs, syscall.SIGCHLD)
	for range sigs {
		r.reap()
	}
}

func (r *reaper) reap() {
	for {
		var ws syscall.WaitStatus
		pid, err := syscall.Wait4(-1, &ws, syscall.WNOHANG, nil)
		if pid <= 0 || err != nil {
			return
		}
		code := ws.ExitStatus()
		if ws.Signaled() {
			code = 128 + int(ws.Signal())
		}
		r.mu.Lock()
		if ch, ok := r.waiting[pid]; ok {
			delete(r.waiting, pid)
			ch <- code
		} else {
			r.early[pid] = code
		}
		r.mu.Unlock()
	}
}

// start runs a command with the given standard streams and returns a
// channel that receives its exit code.
func (r *reaper) start(cmd *Command, stdio []*os.File) (<-chan int, int, error) {
	path := cmd.Path
	if path == "" {
		var err error
		if path, err = lookPath(cmd.Args[0], cmd.Env); err != nil {
			return nil, 0, err
		}
	}
	dir := cmd.Dir
	if dir == "" {
		dir = "/"
	}
	attr := &os.ProcAttr{
		Dir:   dir,
		Env:   cmd.Env,
		Files: stdio,
		Sys: &syscall.SysProcAttr{
			Setsid: true, Setctty: cmd.TTY, Ctty: 0,
			// A user namespace of its own, nested in the sandbox's:
			// the program is root there, but holds no capability over
			// init (whose memory, descriptors and environment it could
			// otherwise read through /proc or ptrace) nor over the
			// sandbox's mounts and network.
			Cloneflags:  syscall.CLONE_NEWUSER,
			UidMappings: r.uids, GidMappings: r.gids,
			GidMappingsEnableSetgroups: r.setgroups,
		},
	}

	exited := make(chan int, 1)
	r.mu.Lock()
	defer r.mu.Unlock()
	p, err := os.StartProcess(path, cmd.Args, attr)
	if err != nil {
		return nil, 0, fmt.Errorf("starting %s: %w", cmd.Args[0], unwrapPathError(err))
	}
	pid := p.Pid
	p.Release()
	if code, ok := r.early[pid]; ok {
		delete(r.early, pid)
		exited <- code
	} else {
		r.waiting[pid] = exited
	}
	return exited, pid, nil
}

func unwrapPathError(err error) error {
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// lookPath finds a program in the PATH of the command's own environment.
func lookPath(name string, env []string) (string, error) {
	if strings.Contains(name, "/") {
		return name, nil
	}
	path := "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	for _, kv := range env {
		if v, ok := strings.CutPrefix(kv, "PATH="); ok {
			path = v
		}
	}
	for _, dir := range filepath.SplitList(path) {
		if dir == "" {
			dir = "."
		}
		p := filepath.Join(dir, name)
		if info, err := os.Stat(p); err == nil && !info.IsDir() && info.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	return "", fmt.Errorf("%s: command not found", name)
}
