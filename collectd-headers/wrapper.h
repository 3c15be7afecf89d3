/*
 * collectd-rest: the collectd API we bind to.
 *
 * This file is ours; it copies nothing. It includes the headers that the
 * installed collectd (Debian: collectd-dev) ships, and build.rs runs bindgen
 * over it with an allowlist, so that the bindings always match the collectd
 * we build against. Include directories (set by build.rs):
 *   <root>, <root>/collectd/core, <root>/collectd
 * where <root> is /usr/include or $COLLECTD_INCLUDE_DIR.
 */
#include "collectd/core/daemon/plugin.h"
#include "collectd/core/daemon/configfile.h"
#include "collectd/core/daemon/utils_cache.h"
#include "collectd/core/daemon/filter_chain.h"
#include "collectd/core/utils/metadata/meta_data.h"
#include "liboconfig/oconfig.h"
