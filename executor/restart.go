package executor

import (
	"context"
	"strings"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
)

// restartLeftBehind restarts, once each, the VMIs KubeVirt leaves on the
// old virt-launcher whose VM starts them again (spec.workloads.unmovable:
// Restart): it deletes the VMI, by UID, and the VM controller starts a new
// one on the new virt-launcher. The wait then counts it Restarted.
func (ws *workloadWait) restartLeftBehind(ctx context.Context) error {
	var names []string
	for _, v := range ws.res.Workloads.restart {
		if ws.restarted[v.UID] {
			continue
		}
		if err := ws.e.deleteVMI(ctx, v); err != nil {
			return err
		}
		ws.restarted[v.UID] = true
		names = append(names, v.key())
	}
	if len(names) > 0 {
		ws.say.say("restarting %d VMIs KubeVirt leaves on a virt-launcher older than %s, for their VM to start them again (spec.workloads.unmovable: Restart): %s",
			len(names), ws.j.to, listSome(names))
	}
	return nil
}

// deleteVMI deletes v if it is still the VMI that was read (same UID).
func (e *Executor) deleteVMI(ctx context.Context, v VMI) error {
	version := strings.TrimPrefix(v.APIVersion, "kubevirt.io/")
	if version == "" || version == v.APIVersion {
		version = "v1"
	}
	uid := types.UID(v.UID)
	ctx1, cancel := e.call(ctx)
	defer cancel()
	err := e.dyn.Resource(schema.GroupVersionResource{Group: "kubevirt.io", Version: version, Resource: "virtualmachineinstances"}).
		Namespace(v.Namespace).Delete(ctx1, v.Name, metav1.DeleteOptions{Preconditions: &metav1.Preconditions{UID: &uid}})
	if err != nil && !apierrors.IsNotFound(err) && !apierrors.IsConflict(err) {
		return apiError(err, "restart VMI %s", v.key())
	}
	return nil
}
