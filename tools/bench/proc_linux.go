//go:build linux

package main

import "syscall"

// childProcAttr makes the kernel SIGKILL a child (redis-server, a worker
// process) if the bench dies without cleaning up.
func childProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
