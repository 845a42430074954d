//go:build linux

package secret

import (
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// statxMask asks statx for the fields a fileID holds.
const statxMask = unix.STATX_INO | unix.STATX_SIZE | unix.STATX_MTIME | unix.STATX_CTIME

// noStatx is set once statx has failed in a way that says the kernel or a
// seccomp filter does not offer it; os.Stat is used from then on.
var noStatx atomic.Bool

// statPath identifies the file at the NUL-terminated path pathz. exists is
// false, with no error, when there is no file there.
//
// It calls statx directly because os.Stat allocates twice (the C string
// and the FileInfo), and this runs for every proxied request.
func statPath(pathz []byte) (id fileID, exists bool, err error) {
	if noStatx.Load() {
		return statPathPortable(pathz)
	}
	var sx unix.Statx_t
	dirfd := unix.AT_FDCWD
	_, _, errno := unix.Syscall6(unix.SYS_STATX,
		uintptr(dirfd),
		uintptr(unsafe.Pointer(&pathz[0])),
		uintptr(unix.AT_STATX_SYNC_AS_STAT),
		uintptr(statxMask),
		uintptr(unsafe.Pointer(&sx)),
		0)
	switch errno {
	case 0:
		return statxID(&sx), true, nil
	case unix.ENOENT:
		return fileID{}, false, nil
	case unix.ENOSYS, unix.EPERM:
		noStatx.Store(true)
		return statPathPortable(pathz)
	}
	return fileID{}, false, errno
}

// statFile identifies the open file f the way statPath identifies a path.
func statFile(f *os.File) (fileID, error) {
	if !noStatx.Load() {
		var sx unix.Statx_t
		const flags = unix.AT_EMPTY_PATH | unix.AT_STATX_SYNC_AS_STAT
		err := unix.Statx(int(f.Fd()), "", flags, statxMask, &sx)
		if err == nil {
			return statxID(&sx), nil
		}
		if !errors.Is(err, unix.ENOSYS) && !errors.Is(err, unix.EPERM) {
			return fileID{}, err
		}
		noStatx.Store(true)
	}
	info, err := f.Stat()
	if err != nil {
		return fileID{}, err
	}
	return infoID(info.Sys().(*syscall.Stat_t)), nil
}

// statPathPortable is statPath through os.Stat, for kernels without statx.
func statPathPortable(pathz []byte) (fileID, bool, error) {
	info, err := os.Stat(string(pathz[:len(pathz)-1]))
	if errors.Is(err, os.ErrNotExist) {
		return fileID{}, false, nil
	}
	if err != nil {
		return fileID{}, false, err
	}
	return infoID(info.Sys().(*syscall.Stat_t)), true, nil
}

func statxID(sx *unix.Statx_t) fileID {
	return fileID{
		dev:   unix.Mkdev(sx.Dev_major, sx.Dev_minor),
		ino:   sx.Ino,
		size:  int64(sx.Size),
		mtime: sx.Mtime.Sec*1e9 + int64(sx.Mtime.Nsec),
		ctime: sx.Ctime.Sec*1e9 + int64(sx.Ctime.Nsec),
	}
}

func infoID(st *syscall.Stat_t) fileID {
	return fileID{
		dev:   uint64(st.Dev),
		ino:   uint64(st.Ino),
		size:  int64(st.Size),
		mtime: st.Mtim.Nano(),
		ctime: st.Ctim.Nano(),
	}
}
