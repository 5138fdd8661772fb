// Command luaq is the command-line companion of the luaq task queue.
//
// Usage:
//
//	luaq <command> [flags]
//
// Commands:
//
//	demo    run a self-checking end-to-end demo (embedded server by default)
//	help    print this usage
//
// Each command parses its own flags with the standard flag package; run
// "luaq <command> -h" for a command's flags. More commands (inspect, bundle,
// janitor, bench) plug in by adding an entry to commands.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// Exit codes of the luaq command.
const (
	exitOK      = 0 // the command succeeded
	exitFailure = 1 // the command ran and failed
	exitUsage   = 2 // the command line was wrong
)

// command is one subcommand of luaq.
type command struct {
	// name selects the command: luaq <name> ...
	name string
	// summary is the one-line description shown in the usage.
	summary string
	// run executes the command with the arguments after its name and
	// returns the process exit code.
	run func(ctx context.Context, args []string, stdout, stderr io.Writer) int
}

// commands returns the subcommands of luaq, in the order the usage lists
// them. Add new subcommands here.
func commands() []command {
	return []command{
		{name: "demo", summary: "enqueue and process a mix of tasks end to end, then check that none was lost", run: demoCommand},
		{name: "janitor", summary: "clean queues: expired leases and tasks, archive and retention trims, dead workers", run: janitorCommand},
		{name: "bundle", summary: "export the Lua bundle and its manifest to a directory, or load it on every node", run: bundleCommand},
	}
}

// main runs luaq with the process's arguments and exits with its code.
func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run dispatches args (the command line without the program name) to a
// subcommand and returns the exit code. A missing or unknown subcommand, or
// "help", prints the usage to stderr and returns exitUsage.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprintln(stderr, "luaq: no command given")
		printUsage(stderr)
		return exitUsage
	}
	name := args[0]
	if isHelp(name) {
		printUsage(stderr)
		return exitUsage
	}
	cmd, ok := findCommand(name)
	if !ok {
		fmt.Fprintf(stderr, "luaq: unknown command %q\n", name)
		printUsage(stderr)
		return exitUsage
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return cmd.run(ctx, args[1:], stdout, stderr)
}

// isHelp reports whether arg asks for the top-level usage.
func isHelp(arg string) bool {
	switch arg {
	case "help", "-h", "-help", "--help":
		return true
	}
	return false
}

// findCommand returns the subcommand called name.
func findCommand(name string) (command, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return command{}, false
}

// printUsage writes the top-level usage: the synopsis and the list of
// subcommands.
func printUsage(w io.Writer) {
	fmt.Fprintln(w, "usage: luaq <command> [flags]")
	fmt.Fprintln(w)
	fmt.Fprintln(w, "commands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintf(w, "  %-8s %s\n", "help", "print this usage")
	fmt.Fprintln(w)
	fmt.Fprintln(w, `run "luaq <command> -h" for the flags of a command`)
}
