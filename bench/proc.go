package main

import (
	"bufio"
	"bytes"
	"os"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// clockTick is the unit of utime and stime in /proc/PID/stat. USER_HZ is
// 100 on every Linux architecture Go runs on.
const clockTick = 10 * time.Millisecond

// procCPU returns the user plus system CPU time the process has used, all
// threads together; 0 when pid is 0 or unreadable.
func procCPU(pid int) time.Duration {
	if pid == 0 {
		return 0
	}
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return 0
	}
	// The command name, in parentheses, may hold spaces: count fields
	// after its closing parenthesis. utime and stime are fields 14 and 15
	// of the whole line, so 12 and 13 after it.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return 0
	}
	fields := strings.Fields(string(data[i+1:]))
	if len(fields) < 13 {
		return 0
	}
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(utime+stime) * clockTick
}

// procFileLimit returns the soft RLIMIT_NOFILE of a process; 0 when it
// cannot be read.
func procFileLimit(pid int) uint64 {
	data, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
	if err != nil {
		return 0
	}
	for line := range strings.Lines(string(data)) {
		if rest, ok := strings.CutPrefix(line, "Max open files"); ok {
			if f := strings.Fields(rest); len(f) > 0 {
				n, _ := strconv.ParseUint(f[0], 10, 64)
				return n
			}
		}
	}
	return 0
}

// procStats is a look at a process from /proc.
type procStats struct {
	rssKiB  int64
	threads int
	fds     int
	// upstream counts the descriptors that are connections to the
	// upstream: a proxy's pool of connections kept for reuse.
	upstream int
}

func readProcStats(pid, upstreamPort int) procStats {
	var st procStats
	if pid == 0 {
		return st
	}
	f, err := os.Open("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return st
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), ":")
		if !ok {
			continue
		}
		fields := strings.Fields(value)
		if len(fields) == 0 {
			continue
		}
		switch name {
		case "VmRSS":
			st.rssKiB, _ = strconv.ParseInt(fields[0], 10, 64)
		case "Threads":
			st.threads, _ = strconv.Atoi(fields[0])
		}
	}
	st.fds = countFDs(pid)
	st.upstream = countConnsTo(pid, upstreamPort)
	return st
}

// countConnsTo counts the process's TCP sockets whose remote port is port,
// matching its socket descriptors with the kernel's connection tables.
func countConnsTo(pid, port int) int {
	if pid == 0 || port == 0 {
		return 0
	}
	dir := "/proc/" + strconv.Itoa(pid)
	entries, err := os.ReadDir(dir + "/fd")
	if err != nil {
		return 0
	}
	inodes := map[string]bool{}
	for _, e := range entries {
		link, err := os.Readlink(dir + "/fd/" + e.Name())
		if inode, ok := strings.CutPrefix(link, "socket:["); err == nil && ok {
			inodes[strings.TrimSuffix(inode, "]")] = true
		}
	}
	n := 0
	for _, table := range []string{"/net/tcp", "/net/tcp6"} {
		data, err := os.ReadFile(dir + table)
		if err != nil {
			continue
		}
		for line := range strings.Lines(string(data)) {
			// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
			f := strings.Fields(line)
			if len(f) < 10 || !inodes[f[9]] {
				continue
			}
			_, hexPort, ok := strings.Cut(f[2], ":")
			if p, err := strconv.ParseUint(hexPort, 16, 16); ok && err == nil && int(p) == port {
				n++
			}
		}
	}
	return n
}

func countFDs(pid int) int {
	if pid == 0 {
		return 0
	}
	entries, err := os.ReadDir("/proc/" + strconv.Itoa(pid) + "/fd")
	if err != nil {
		return 0
	}
	return len(entries)
}

// raiseFileLimit lifts RLIMIT_NOFILE as far as the kernel allows, up to
// want, so that the benchmark and the proxies it starts (which inherit
// it) can hold the idle connections. It returns the limit in force.
func raiseFileLimit(want uint64) uint64 {
	if data, err := os.ReadFile("/proc/sys/fs/nr_open"); err == nil {
		if max, err := strconv.ParseUint(strings.TrimSpace(string(data)), 10, 64); err == nil {
			want = min(want, max)
		}
	}
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		return 0
	}
	// Raising the hard limit needs privilege; without it, the soft limit
	// goes up to the hard one.
	if syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: want, Max: max(want, lim.Max)}) != nil {
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: lim.Max, Max: lim.Max})
	}
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim)
	return lim.Cur
}

// machine describes where the run happened.
type machine struct {
	Cores      int    `json:"cores"`
	CPU        string `json:"cpu"`
	MemoryGiB  int64  `json:"memory_gib"`
	Kernel     string `json:"kernel"`
	Go         string `json:"go"`
	LoadStart  string `json:"load_average_start"`
	LoadEnd    string `json:"load_average_end,omitempty"`
	FileLimit  uint64 `json:"file_limit"`
	GOMAXPROCS int    `json:"gomaxprocs"`
	OS         string `json:"os,omitempty"`
}

func describeMachine() machine {
	m := machine{
		Cores:      runtime.NumCPU(),
		CPU:        cpuModel(),
		Kernel:     readTrimmed("/proc/sys/kernel/osrelease"),
		Go:         runtime.Version(),
		LoadStart:  loadAverage(),
		GOMAXPROCS: runtime.GOMAXPROCS(0),
	}
	if meminfo, err := os.ReadFile("/proc/meminfo"); err == nil {
		for line := range strings.Lines(string(meminfo)) {
			if rest, ok := strings.CutPrefix(line, "MemTotal:"); ok {
				if f := strings.Fields(rest); len(f) > 0 {
					kib, _ := strconv.ParseInt(f[0], 10, 64)
					m.MemoryGiB = (kib + 1<<19) >> 20
				}
			}
		}
	}
	if osRelease, err := os.ReadFile("/etc/os-release"); err == nil {
		for line := range strings.Lines(string(osRelease)) {
			if rest, ok := strings.CutPrefix(strings.TrimSpace(line), "PRETTY_NAME="); ok {
				m.OS = strings.Trim(rest, `"`)
			}
		}
	}
	return m
}

func cpuModel() string {
	data, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown"
	}
	for line := range strings.Lines(string(data)) {
		name, value, ok := strings.Cut(line, ":")
		if ok && strings.TrimSpace(name) == "model name" {
			return strings.TrimSpace(value)
		}
	}
	return "unknown"
}

// loadAverage returns the 1, 5 and 15 minute load averages.
func loadAverage() string {
	f := strings.Fields(readTrimmed("/proc/loadavg"))
	if len(f) < 3 {
		return ""
	}
	return strings.Join(f[:3], " ")
}

func readTrimmed(path string) string {
	data, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(data))
}
