// Package sandbox runs programs in a Linux sandbox: new user, mount, PID,
// network, IPC and UTS namespaces; the host's root read-only under a
// copy-on-write layer; a private home, /tmp and /dev; and a network with
// only loopback, where a forwarder carries connections to 127.0.0.1:3128 to
// a proxy's Unix socket on the host. It knows nothing of credentials: it is
// handed a socket, a CA bundle and an environment.
//
// A sandbox's first process is cordon itself, re-executed as the sandbox's
// init. It builds the filesystem, runs the forwarder, reaps orphans and
// starts programs on request over a control socket, so that "cordon exec"
// can join a running sandbox without entering its namespaces by hand.
package sandbox

import (
	"errors"
	"path/filepath"
)

// InitArg is the argument that makes cordon run as a sandbox's init. The
// command line must hand it to RunInit before anything else.
const InitArg = "__sandbox-init"

// ProxyPort is where programs inside reach the proxy.
const ProxyPort = 3128

// Mount is a host directory shown inside the sandbox.
type Mount struct {
	Source   string `json:"source"` // host path
	Target   string `json:"target"` // path inside; the same as Source for workspaces
	ReadOnly bool   `json:"read_only"`
}

// Spec describes a sandbox to start.
type Spec struct {
	// Name is the sandbox's name, also its host name.
	Name string
	// Dir is the sandbox's own directory on the host. It holds the
	// copy-on-write layer (layer/) and the home directory (home/), which
	// persist until the sandbox is removed.
	Dir string
	// RuntimeDir holds the sockets: the proxy's (ProxySocket, served by the
	// caller) and init's control socket. Files there live as long as the
	// sandbox runs.
	RuntimeDir string
	// HomePath is where Dir/home appears inside: the user's home path.
	HomePath string
	// Workspaces are mounted at their Target, read-write unless ReadOnly.
	Workspaces []Mount
	// Hide lists host paths that must not be visible inside, such as
	// cordon's own state directory; an empty directory covers each.
	Hide []string
	// CABundle is a PEM file with the system roots and cordon's CA; it is
	// mounted over the system's bundle paths. CACert is cordon's CA alone.
	CABundle string
	CACert   string
	// Bridges are services on the host's loopback that a provider names
	// (an Ollama or vLLM on the workstation). Inside, the sandbox's own
	// loopback answers on the same port and carries each connection to
	// the proxy as a CONNECT to Host:Port, so clients that keep localhost
	// away from the proxy still reach the provider, through cordon.
	Bridges []Bridge
}

// Bridge is one host loopback service reachable from inside.
type Bridge struct {
	Host string `json:"host"` // as the provider names it: localhost, 127.0.0.1, ::1
	Port int    `json:"port"`
}

// Paths of files inside every sandbox.
const (
	InsideCABundle = "/run/cordon/ca-bundle.pem"
	InsideCACert   = "/run/cordon/ca.pem"
)

// Socket names in a sandbox's runtime directory.
const (
	ProxySocket   = "proxy.sock"
	ControlSocket = "control.sock"
)

// ErrUnsupported is returned where Linux namespaces are not available.
var ErrUnsupported = errors.New("sandboxes need Linux namespaces")

// layerDirs returns the upper and work directories of the layer for one
// top-level directory of the host's root.
func layerDirs(dir, top string) (upper, work string) {
	return filepath.Join(dir, "layer", "upper", top), filepath.Join(dir, "layer", "work", top)
}
