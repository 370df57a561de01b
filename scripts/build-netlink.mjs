// placeholder: replaced by the patched-binding build
