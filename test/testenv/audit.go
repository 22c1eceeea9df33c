package testenv

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// auditPolicy records every write at the Metadata level and no read: the
// oracle of what a process actually changed, as the apiserver saw it. The
// writes of ConfigMaps in kvgitops's namespace (the agents' memory) are
// recorded with their body: what an agent had made durable, and when.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived]
rules:
- level: Request
  verbs: [create, update, patch]
  namespaces: [kvgitops]
  resources: [{group: "", resources: [configmaps]}]
- level: Metadata
  verbs: [create, update, patch, delete, deletecollection]
- level: None
`

// Audit turns on the apiserver's audit log into dir: pass the flags it
// returns to Start (or MainWith), read the log with AuditLog.
func Audit(dir string) (map[string]string, error) {
	policy := filepath.Join(dir, "audit-policy.yaml")
	if err := os.WriteFile(policy, []byte(auditPolicy), 0o600); err != nil {
		return nil, err
	}
	return map[string]string{
		"audit-policy-file": policy, "audit-log-path": filepath.Join(dir, "audit.log"),
		"audit-log-format": "json", "audit-log-mode": "blocking", "audit-log-maxsize": "0",
	}, nil
}

// AuditEvent is one write the apiserver answered.
type AuditEvent struct {
	Verb      string    `json:"verb"`
	UserAgent string    `json:"userAgent"`
	Stage     string    `json:"stage"`
	At        time.Time `json:"stageTimestamp"`
	ObjectRef struct {
		Resource, Namespace, Name string
	} `json:"objectRef"`
	ResponseStatus struct {
		Code int `json:"code"`
	} `json:"responseStatus"`
	// RequestObject is the body, for the writes recorded with it.
	RequestObject json.RawMessage `json:"requestObject,omitempty"`
}

func (e AuditEvent) String() string {
	return fmt.Sprintf("%s %s %s/%s → %d at %s by %q", e.Verb, e.ObjectRef.Resource, e.ObjectRef.Namespace, e.ObjectRef.Name,
		e.ResponseStatus.Code, e.At.Format("15:04:05.000"), e.UserAgent)
}

// AuditLog reads the completed writes of the audit log in dir whose user
// agent contains agent ("" for all).
func AuditLog(dir, agent string) ([]AuditEvent, error) {
	f, err := os.Open(filepath.Join(dir, "audit.log"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []AuditEvent
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 16<<20)
	for sc.Scan() {
		var e AuditEvent
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return nil, fmt.Errorf("audit log: %w", err)
		}
		if e.Stage == "ResponseComplete" && strings.Contains(e.UserAgent, agent) {
			out = append(out, e)
		}
	}
	return out, sc.Err()
}
