package executor

import (
	"context"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// JournalKey is the ConfigMap key that holds the journal.
const JournalKey = "journal.yaml"

// JournalStore keeps the agent's journal of step intents and outcomes in a
// ConfigMap the agent owns, in its own namespace. Every write carries the
// resourceVersion last read or written: a second writer (a stale leader)
// makes it fail instead of being overwritten.
type JournalStore struct {
	e         *Executor
	namespace string
	name      string
	rv        string // "" until read; "-" when the ConfigMap does not exist
}

// Journal returns the store of the ConfigMap namespace/name.
func (e *Executor) Journal(namespace, name string) *JournalStore {
	return &JournalStore{e: e, namespace: namespace, name: name}
}

// Load reads the journal; nil when there is none yet.
func (j *JournalStore) Load(ctx context.Context) ([]byte, error) {
	ctx, cancel := j.e.call(ctx)
	defer cancel()
	cm, err := j.e.kube.CoreV1().ConfigMaps(j.namespace).Get(ctx, j.name, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		j.rv = "-"
		return nil, nil
	}
	if err != nil {
		return nil, apiError(err, "read the journal ConfigMap %s/%s", j.namespace, j.name)
	}
	j.rv = cm.ResourceVersion
	return []byte(cm.Data[JournalKey]), nil
}

// Save writes the journal with the last resourceVersion as precondition.
func (j *JournalStore) Save(ctx context.Context, data []byte) error {
	if j.rv == "" {
		if _, err := j.Load(ctx); err != nil {
			return err
		}
	}
	ctx, cancel := j.e.call(ctx)
	defer cancel()
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: j.name, Namespace: j.namespace,
			Labels: map[string]string{"app.kubernetes.io/name": "kvgitops", "app.kubernetes.io/component": "journal"}},
		Data: map[string]string{JournalKey: string(data)},
	}
	var err error
	var out *corev1.ConfigMap
	if j.rv == "-" {
		out, err = j.e.kube.CoreV1().ConfigMaps(j.namespace).Create(ctx, cm, metav1.CreateOptions{FieldManager: j.e.cfg.FieldManager})
	} else {
		cm.ResourceVersion = j.rv
		out, err = j.e.kube.CoreV1().ConfigMaps(j.namespace).Update(ctx, cm, metav1.UpdateOptions{FieldManager: j.e.cfg.FieldManager})
	}
	if err != nil {
		if apierrors.IsConflict(err) || apierrors.IsAlreadyExists(err) {
			j.rv = "" // re-read before the next attempt
			return transient(ReasonAPIUnavailable, err, "the journal ConfigMap %s/%s was changed by another writer", j.namespace, j.name)
		}
		return apiError(err, "write the journal ConfigMap %s/%s", j.namespace, j.name)
	}
	j.rv = out.ResourceVersion
	return nil
}
