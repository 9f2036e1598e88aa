// placeholder: replaced by the tokenizer work (sentencepiece C shim, dlopen'ed with RTLD_DEEPBIND)
extern "C" int glmpipe_spm_abi_version() { return 0; }
