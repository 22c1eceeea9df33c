// Command probe reports what a container sees, as JSON: podrun's test
// runs it as a pod.
package main

import (
	"encoding/json"
	"os"
)

func main() {
	host, _ := os.Hostname()
	wd, _ := os.Getwd()
	secret, _ := os.ReadFile("/etc/probe/secret/key")
	token, _ := os.ReadFile("/var/run/secrets/kubernetes.io/serviceaccount/namespace")
	writable := func(p string) bool {
		f, err := os.CreateTemp(p, "probe")
		if err != nil {
			return false
		}
		f.Close()
		os.Remove(f.Name())
		return true
	}
	_ = json.NewEncoder(os.Stdout).Encode(map[string]any{
		"uid": os.Getuid(), "gid": os.Getgid(), "pid": os.Getpid(), "hostname": host, "wd": wd,
		"rootWritable": writable(wd), "tmpWritable": writable("/tmp"), "secretWritable": writable("/etc/probe/secret"),
		"secret": string(secret), "namespace": string(token), "env": os.Environ(), "args": os.Args[1:],
	})
}
