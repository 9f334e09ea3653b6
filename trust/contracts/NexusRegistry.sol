// SPDX-License-Identifier: MIT
pragma solidity 0.8.30;

/// @title MCP Nexus server registry
/// @notice Anchors the whitelist of MCP servers that Nexus nodes may run: for each (server id, version) the
/// keccak256 hash of its canonical manifest and whether it is active or revoked. Curators sign manifests off
/// chain (EIP-712); nodes accept a signature only from an address in this contract's curator set. Only the
/// governance account publishes, revokes and manages curators. A published version is immutable: it can be
/// revoked, never re-pointed to another manifest, so a hash once trusted cannot be swapped under a name.
contract NexusRegistry {
    enum Status {
        None,
        Active,
        Revoked
    }

    struct Record {
        string id;
        string version;
        bytes32 manifestHash;
        Status status;
        uint64 publishedBlock;
        uint64 revokedBlock;
        string reason;
    }

    address public governance;
    address public pendingGovernance;
    /// @notice The block this registry was deployed in: followers replay events from here.
    uint256 public immutable deployedBlock;

    mapping(address => bool) public isCurator;
    address[] private curatorList;

    Record[] private records;
    /// @dev key(id, version) => index in `records` + 1 (0 = never published).
    mapping(bytes32 => uint256) private indexOf;

    event GovernanceTransferStarted(address indexed current, address indexed proposed);
    event GovernanceTransferred(address indexed previous, address indexed current);
    event CuratorAdded(address indexed curator);
    event CuratorRemoved(address indexed curator);
    event Published(bytes32 indexed key, string id, string version, bytes32 manifestHash);
    event Revoked(bytes32 indexed key, string id, string version, bytes32 manifestHash, string reason);

    error NotGovernance(address caller);
    error NotPendingGovernance(address caller);
    error ZeroAddress();
    error EmptyField();
    error AlreadyPublished(string id, string version);
    error NotActive(string id, string version);
    error AlreadyCurator(address curator);
    error NotCurator(address curator);

    modifier onlyGovernance() {
        if (msg.sender != governance) revert NotGovernance(msg.sender);
        _;
    }

    constructor(address initialGovernance) {
        if (initialGovernance == address(0)) revert ZeroAddress();
        governance = initialGovernance;
        deployedBlock = block.number;
        emit GovernanceTransferred(address(0), initialGovernance);
    }

    function key(string calldata id, string calldata version) public pure returns (bytes32) {
        return keccak256(abi.encode(id, version));
    }

    /// @notice Starts a two-step transfer: the proposed account must call `acceptGovernance`.
    function transferGovernance(address proposed) external onlyGovernance {
        if (proposed == address(0)) revert ZeroAddress();
        pendingGovernance = proposed;
        emit GovernanceTransferStarted(governance, proposed);
    }

    function acceptGovernance() external {
        if (msg.sender != pendingGovernance) revert NotPendingGovernance(msg.sender);
        emit GovernanceTransferred(governance, msg.sender);
        governance = msg.sender;
        pendingGovernance = address(0);
    }

    function addCurator(address curator) external onlyGovernance {
        if (curator == address(0)) revert ZeroAddress();
        if (isCurator[curator]) revert AlreadyCurator(curator);
        isCurator[curator] = true;
        curatorList.push(curator);
        emit CuratorAdded(curator);
    }

    function removeCurator(address curator) external onlyGovernance {
        if (!isCurator[curator]) revert NotCurator(curator);
        isCurator[curator] = false;
        uint256 last = curatorList.length - 1;
        for (uint256 i = 0; i <= last; i++) {
            if (curatorList[i] == curator) {
                curatorList[i] = curatorList[last];
                curatorList.pop();
                break;
            }
        }
        emit CuratorRemoved(curator);
    }

    function curators() external view returns (address[] memory) {
        return curatorList;
    }

    function publish(string calldata id, string calldata version, bytes32 manifestHash) external onlyGovernance {
        if (bytes(id).length == 0 || bytes(version).length == 0 || manifestHash == bytes32(0)) revert EmptyField();
        bytes32 k = key(id, version);
        if (indexOf[k] != 0) revert AlreadyPublished(id, version);
        records.push(Record(id, version, manifestHash, Status.Active, uint64(block.number), 0, ""));
        indexOf[k] = records.length;
        emit Published(k, id, version, manifestHash);
    }

    function revoke(string calldata id, string calldata version, string calldata reason) external onlyGovernance {
        bytes32 k = key(id, version);
        uint256 index = indexOf[k];
        if (index == 0 || records[index - 1].status != Status.Active) revert NotActive(id, version);
        Record storage record = records[index - 1];
        record.status = Status.Revoked;
        record.revokedBlock = uint64(block.number);
        record.reason = reason;
        emit Revoked(k, id, version, record.manifestHash, reason);
    }

    /// @notice The record of one version; status None when it was never published.
    function get(string calldata id, string calldata version) external view returns (Record memory) {
        uint256 index = indexOf[key(id, version)];
        if (index == 0) return Record(id, version, bytes32(0), Status.None, 0, 0, "");
        return records[index - 1];
    }

    /// @notice Whether `manifestHash` is the active manifest of (id, version).
    function isActive(string calldata id, string calldata version, bytes32 manifestHash) external view returns (bool) {
        uint256 index = indexOf[key(id, version)];
        if (index == 0) return false;
        Record storage record = records[index - 1];
        return record.status == Status.Active && record.manifestHash == manifestHash;
    }

    function recordCount() external view returns (uint256) {
        return records.length;
    }

    /// @notice Records in publication order, `count` from `start` (fewer at the end).
    function list(uint256 start, uint256 count) external view returns (Record[] memory page) {
        uint256 end = start + count > records.length ? records.length : start + count;
        if (start >= end) return new Record[](0);
        page = new Record[](end - start);
        for (uint256 i = start; i < end; i++) page[i - start] = records[i];
    }
}
