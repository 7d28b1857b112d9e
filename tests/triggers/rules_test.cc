#include "daemon/triggers/rules.h"

#include <gtest/gtest.h>
