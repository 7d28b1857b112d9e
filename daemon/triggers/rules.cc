#include "daemon/triggers/rules.h"
