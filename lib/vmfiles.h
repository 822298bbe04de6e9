/*
 * vmfiles: the fixed files of a session's VM, and where things live there.
 *
 *   /etc/linode-coder/vllm.env       what vLLM runs (lc_vllm_env_render)
 *   /etc/linode-coder/vm.env         the session's name and cache volume
 *   /etc/linode-coder/secrets.env    VLLM_API_KEY, HF_TOKEN (docker
 *                                    --env-file format; pushed over SSH by
 *                                    lc-create, never in user data)
 *   /usr/local/lib/linode-coder/     provision, mount-cache, fetch,
 *                                    start-vllm, run-vllm, wait-serving, phase
 *   /var/lib/linode-coder/phase      the latest finished step (one word)
 *   /var/lib/linode-coder/phase.log  every step with its time
 *   /var/lib/linode-coder/hf         the Hugging Face cache (a volume's
 *                                    mount point when the spec names one)
 */
#ifndef LC_VMFILES_H
#define LC_VMFILES_H

#define LC_VM_ETC	"/etc/linode-coder"
#define LC_VM_VLLM_ENV	LC_VM_ETC "/vllm.env"
#define LC_VM_ENV	LC_VM_ETC "/vm.env"
#define LC_VM_SECRETS	LC_VM_ETC "/secrets.env"
#define LC_VM_LIB	"/usr/local/lib/linode-coder"
#define LC_VM_STATE	"/var/lib/linode-coder"
#define LC_VM_PHASE	LC_VM_STATE "/phase"
#define LC_VM_HF	LC_VM_STATE "/hf"
#define LC_VM_VOLUME_DEV "/dev/disk/by-id/scsi-0Linode_Volume_"

struct lc_vmfile {
	const char	*path;
	const char	*permissions;	/* octal, as cloud-init wants it */
	const char	*content;
};

/* The fixed files, ending with a NULL path. */
extern const struct lc_vmfile lc_vmfiles[];

#endif
