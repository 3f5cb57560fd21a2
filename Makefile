# SPDX-License-Identifier: GPL-2.0
# uniballoon: build, install and test. Kbuild rules live in ./Kbuild.
#
#   make                          build for the running kernel
#   make KERNELRELEASE=<release>  build for another installed kernel
#   make install                  install into /lib/modules/<release>/updates
#   make check                    the whole test suite (sets itself up)
#   make demo                     boot a guest and show the balloon working
#   make bench                    benchmark figures (virtio cost curves, VMware commands per GiB)

KERNELRELEASE ?= $(shell uname -r)
KDIR ?= /lib/modules/$(KERNELRELEASE)/build

all: modules

src/compat_config.h: FORCE
	sh src/compat/configure.sh $(KDIR) $@

modules: src/compat_config.h
	$(MAKE) -C $(KDIR) M=$(CURDIR) modules

install: modules
	$(MAKE) -C $(KDIR) M=$(CURDIR) INSTALL_MOD_DIR=updates modules_install
	depmod -a $(KERNELRELEASE)

clean:
	$(MAKE) -C $(KDIR) M=$(CURDIR) clean || true
	rm -f src/compat_config.h

check:
	tools/lab/check.sh

demo:
	tools/lab/demo.sh

bench:
	tools/lab/bench.sh

.PHONY: all modules install clean check demo bench FORCE
