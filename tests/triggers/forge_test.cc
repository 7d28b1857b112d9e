#include "daemon/triggers/forge.h"

#include <gtest/gtest.h>
