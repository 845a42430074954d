package sandbox

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// startTimeout bounds how long init may take to build the sandbox.
const startTimeout = 30 * time.Second

// Sandbox is a running sandbox's init, seen from the host.
type Sandbox struct {
	spec     Spec
	cmd      *exec.Cmd
	lifeline *os.File
	done     chan struct{}
}

// Start creates the namespaces and runs init in them, which builds the
// filesystem and starts the forwarder. The proxy must already be serving
// on RuntimeDir/proxy.sock. It returns once init is ready to start
// programs, or with the reason it could not be.
func Start(spec Spec) (*Sandbox, error) {
	configR, configW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	statusR, statusW, err := os.Pipe()
	if err != nil {
		return nil, err
	}
	lifeR, lifeW, err := os.Pipe()
	if err != nil {
		return nil, err
	}

	self, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("finding cordon's own executable: %w", err)
	}
	cmd := &exec.Cmd{
		Path: self,
		Args: []string{"cordon", InitArg},
		// init's environment is readable inside; the host's may hold
		// credentials, so init gets none of it.
		Env:        []string{},
		ExtraFiles: []*os.File{configR, statusW, lifeR},
		SysProcAttr: &syscall.SysProcAttr{
			Cloneflags: syscall.CLONE_NEWUSER | syscall.CLONE_NEWNS | syscall.CLONE_NEWPID |
				syscall.CLONE_NEWNET | syscall.CLONE_NEWIPC | syscall.CLONE_NEWUTS,
			UidMappings: idMappings(os.Getuid()),
			GidMappings: idMappings(os.Getgid()),
			// Unprivileged users may map a group only with setgroups denied.
			GidMappingsEnableSetgroups: os.Getuid() == 0,
			// Its own session: a terminal's signals reach the program the
			// terminal is handed to, not init.
			Setsid: true,
		},
	}
	if err := cmd.Start(); err != nil {
		closeAll([]*os.File{configR, configW, statusR, statusW, lifeR, lifeW})
		return nil, namespaceError(err)
	}
	configR.Close()
	statusW.Close()
	lifeR.Close()

	s := &Sandbox{spec: spec, cmd: cmd, lifeline: lifeW, done: make(chan struct{})}
	go func() {
		cmd.Wait()
		close(s.done)
	}()

	err = json.NewEncoder(configW).Encode(initConfig{Spec: spec})
	configW.Close()
	if err == nil {
		err = waitReady(statusR, s.done)
	}
	statusR.Close()
	if err != nil {
		s.Kill()
		return nil, err
	}
	return s, nil
}

// idMappings maps the caller to root inside. For root on the host every
// ID maps to itself, so files keep their owners; for a normal user only
// their own ID exists inside, as root of the namespace and nothing more.
func idMappings(id int) []syscall.SysProcIDMap {
	if os.Getuid() == 0 {
		return []syscall.SysProcIDMap{{ContainerID: 0, HostID: 0, Size: 1<<32 - 1}}
	}
	return []syscall.SysProcIDMap{{ContainerID: 0, HostID: id, Size: 1}}
}

// waitReady reads init's status line.
func waitReady(status *os.File, done <-chan struct{}) error {
	line := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(status).ReadString('\n')
		line <- strings.TrimSpace(s)
	}()
	select {
	case s := <-line:
		switch s {
		case "ok":
			return nil
		case "":
			return errors.New("the sandbox's init exited before it was ready")
		}
		return fmt.Errorf("setting up the sandbox: %s", s)
	case <-time.After(startTimeout):
		return fmt.Errorf("the sandbox was not ready after %v", startTimeout)
	}
}

// Done is closed when init has exited, and with it every process inside.
func (s *Sandbox) Done() <-chan struct{} { return s.done }

// Kill ends the sandbox: init kills every process inside and exits.
func (s *Sandbox) Kill() {
	s.lifeline.Close()
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

// namespaceError explains a failure to create the namespaces, with the
// setting that allows them.
func namespaceError(err error) error {
	read := func(path string) string {
		data, _ := os.ReadFile(path)
		return strings.TrimSpace(string(data))
	}
	base := fmt.Errorf("cannot create the sandbox's namespaces: %w", err)
	switch {
	case read("/proc/sys/kernel/unprivileged_userns_clone") == "0":
		return &SetupError{Err: base, Fix: "allow unprivileged user namespaces: sudo sysctl -w kernel.unprivileged_userns_clone=1"}
	case read("/proc/sys/user/max_user_namespaces") == "0":
		return &SetupError{Err: base, Fix: "allow user namespaces: sudo sysctl -w user.max_user_namespaces=15000"}
	case read("/proc/sys/kernel/apparmor_restrict_unprivileged_userns") == "1":
		return &SetupError{Err: base, Fix: "AppArmor restricts user namespaces: sudo sysctl -w kernel.apparmor_restrict_unprivileged_userns=0, or give cordon an AppArmor profile with the userns permission"}
	}
	return &SetupError{Err: base, Fix: "cordon needs user, mount, PID and network namespaces; inside a container, run it with --privileged or a seccomp profile that allows unshare and mount"}
}

// SetupError is a sandbox that cannot be created here, with what to change.
type SetupError struct {
	Err error
	Fix string
}

func (e *SetupError) Error() string { return e.Err.Error() }
func (e *SetupError) Unwrap() error { return e.Err }
