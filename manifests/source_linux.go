package manifests

import (
	"io/fs"
	"syscall"
)

// fileID identifies one version of a file: a rename, a rewrite or a chmod
// changes at least one field, so an equal fileID means the content and the
// permissions checked last time still hold.
type fileID struct {
	dev, ino     uint64
	size         int64
	mtime, ctime syscall.Timespec
}

// idOf returns the identity of the file fi describes. fi must come from
// os.Stat or os.Lstat.
func idOf(fi fs.FileInfo) fileID {
	st := fi.Sys().(*syscall.Stat_t)
	return fileID{dev: st.Dev, ino: st.Ino, size: st.Size, mtime: st.Mtim, ctime: st.Ctim}
}

// ownerOf returns the uid owning the file fi describes. fi must come from
// os.Stat or os.Lstat.
func ownerOf(fi fs.FileInfo) uint32 {
	return fi.Sys().(*syscall.Stat_t).Uid
}
