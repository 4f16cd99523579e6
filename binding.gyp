# node-gyp / prebuildify entry. It delegates to the one build description,
# CMakeLists.txt (via scripts/install.mjs and cmake-js), so sources and flags
# live in one place. The addon lands in build/Release/usam.node.
{
  "targets": [
    {
      "target_name": "usam",
      "type": "none",
      "actions": [
        {
          "action_name": "cmake_build",
          "inputs": ["CMakeLists.txt"],
          "outputs": ["<(PRODUCT_DIR)/usam.node"],
          "action": ["node", "scripts/install.mjs", "--force-source"]
        }
      ]
    }
  ]
}
