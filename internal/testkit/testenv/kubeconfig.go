package testenv

import (
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// WriteKubeconfig writes a kubeconfig for the API server that authenticates
// with token (the admin token when token is empty), for processes such as the
// agent binary that take a kubeconfig file.
func (e *Env) WriteKubeconfig(path, token string) error {
	if token == "" {
		token = e.Config.BearerToken
	}
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["testenv"] = &clientcmdapi.Cluster{Server: e.APIServerURL, CertificateAuthorityData: e.CACertPEM}
	cfg.AuthInfos["testenv"] = &clientcmdapi.AuthInfo{Token: token}
	cfg.Contexts["testenv"] = &clientcmdapi.Context{Cluster: "testenv", AuthInfo: "testenv"}
	cfg.CurrentContext = "testenv"
	return clientcmd.WriteToFile(*cfg, path)
}
