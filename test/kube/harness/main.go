// kube-harness is one binary holding a real etcd and a real kube-apiserver, built from their
// published Go modules, so the Kubernetes tests run against the genuine API server (admission,
// server-side apply, RBAC, watches) without a cluster. The tests start it twice: once as etcd,
// once as the API server, so either can be stopped and restarted on its own.
//
//	kube-harness etcd <etcd flags>
//	kube-harness kube-apiserver <kube-apiserver flags>
//	kube-harness kustomize <directory>     (renders a kustomization, as `kubectl kustomize` does)
package main

import (
	"fmt"
	"os"
	_ "time/tzdata"

	"go.etcd.io/etcd/server/v3/etcdmain"
	"k8s.io/component-base/cli"
	_ "k8s.io/component-base/logs/json/register"
	_ "k8s.io/component-base/metrics/prometheus/clientgo"
	_ "k8s.io/component-base/metrics/prometheus/version"
	"k8s.io/kubernetes/cmd/kube-apiserver/app"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: kube-harness etcd|kube-apiserver|kustomize [args]")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "etcd":
		etcdmain.Main(append([]string{"etcd"}, os.Args[2:]...))
	case "kube-apiserver":
		command := app.NewAPIServerCommand()
		command.SetArgs(os.Args[2:])
		os.Exit(cli.Run(command))
	case "kustomize":
		if len(os.Args) != 3 {
			fmt.Fprintln(os.Stderr, "usage: kube-harness kustomize <directory>")
			os.Exit(2)
		}
		resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), os.Args[2])
		if err == nil {
			var out []byte
			if out, err = resources.AsYaml(); err == nil {
				_, err = os.Stdout.Write(out)
			}
		}
		if err != nil {
			fmt.Fprintf(os.Stderr, "kube-harness kustomize: %v\n", err)
			os.Exit(1)
		}
	default:
		fmt.Fprintf(os.Stderr, "kube-harness: unknown component %q (etcd, kube-apiserver or kustomize)\n", os.Args[1])
		os.Exit(2)
	}
}
