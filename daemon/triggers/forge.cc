#include "daemon/triggers/forge.h"
